#!/usr/bin/env bash
# Conformance of `evolution gateway` against real OpenAI clients (the openai SDK,
# LangChain's ChatOpenAI) and curl, with the emulator as the upstream.
#
#   bash tests/conformance/gateway.sh [CHECK ...]   # from any directory; names select checks
#
# Creates/reuses tests/conformance/.venv (pinned requirements.txt, shared with run.sh),
# builds evolution-emulator and evolution (debug), starts one emulator and one
# redis-server (installed with apt-get if missing) on free loopback ports, runs
# test_gateway.py (which starts and stops the gateways it needs) and always stops
# them. The last line is "N passed, M failed"; the exit status is non-zero on any failure.
#
# Environment knobs (all optional):
#   PYTHON                     interpreter for the venv (default: python3)
#   CONFORMANCE_START_TIMEOUT  seconds to wait for a listening line (default 30)
#   CONFORMANCE_TEST_TIMEOUT   seconds the Python suite may run (default 300)
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
REQS="$HERE/requirements.txt"
PYTHON="${PYTHON:-python3}"
START_TIMEOUT="${CONFORMANCE_START_TIMEOUT:-30}"
TEST_TIMEOUT="${CONFORMANCE_TEST_TIMEOUT:-300}"

KEY_ID="conformance-key"
SECRET="conformance-secret"
MODEL="demo-model" # the emulator's default model: no --model is passed

# shellcheck source=../emulator.sh
source "$REPO/tests/emulator.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
OUTPUT=""
TESTS_RAN=0
CLOSING="" # the suite's "N passed, M failed" line
REDIS_PORT=""

log() { echo "gateway-conformance: $*" >&2; }

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then emulator_stop show; else emulator_stop; fi
    if [[ -n "$REDIS_PORT" ]]; then
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        rm -f "/tmp/evolution-gw-redis-$REDIS_PORT.log" "/tmp/evolution-gw-redis-$REDIS_PORT.pid"
    fi
    if [[ -n "$OUTPUT" ]]; then rm -f "$OUTPUT"; fi
    # A failed run ends on a count, whatever was printed since the suite's.
    conformance_final_count "$rc" "$TESTS_RAN" "$CLOSING"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- venv
conformance_venv "$VENV" "$REQS" "$PYTHON"

# ---------------------------------------------------------------- binaries
log "building evolution-emulator and evolution"
(cd "$REPO" && timeout 1200 cargo build --quiet -p evolution-emulator -p evolution-cli --bins)
TARGET_DIR="$(
    cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
)"
EMULATOR="$TARGET_DIR/debug/evolution-emulator"
GATEWAY="$TARGET_DIR/debug/evolution"
for bin in "$EMULATOR" "$GATEWAY"; do
    [[ -x "$bin" ]] || { log "no binary at $bin"; exit 1; }
done

# ---------------------------------------------------------------- redis (the fleet check)
command -v redis-server >/dev/null || {
    log "installing redis-server"
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
        redis-server >/dev/null
}
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "/tmp/evolution-gw-redis-$REDIS_PORT.pid" \
    --logfile "/tmp/evolution-gw-redis-$REDIS_PORT.log"
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { log "redis-server did not answer"; exit 1; }

# ---------------------------------------------------------------- emulator
EMULATOR_START_TIMEOUT="$START_TIMEOUT" emulator_start "$EMULATOR" --port 0 --ttl 3600 \
    --key "$KEY_ID:$SECRET" || exit 1
log "emulator pid $EMULATOR_PID at $EMULATOR_ROOT, redis on port $REDIS_PORT"

# ---------------------------------------------------------------- tests
TESTS_RAN=1
OUTPUT="$(mktemp "${TMPDIR:-/tmp}/gateway-conformance-output.XXXXXX")"
status=0
EMULATOR_ROOT="$EMULATOR_ROOT" EMULATOR_KEY_ID="$KEY_ID" EMULATOR_SECRET="$SECRET" \
    EMULATOR_MODEL="$MODEL" GATEWAY_BIN="$GATEWAY" \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" LOG_LEVEL=WARNING \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    conformance_suite "$OUTPUT" "$TEST_TIMEOUT" "$VENV/bin/python" "$HERE/test_gateway.py" "$@" ||
    status=$?
CLOSING="$CONFORMANCE_CLOSING"
exit "$status"
