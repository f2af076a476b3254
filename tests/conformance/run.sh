#!/usr/bin/env bash
# Conformance of evolution-emulator against the real reference clients
# (evolution-langchain, evolution-openai, the official openai SDK).
#
#   bash tests/conformance/run.sh        # from any directory
#
# Creates/reuses tests/conformance/.venv (pinned requirements.txt), builds the
# emulator, starts it on a free port, runs test_conformance.py against it and
# always stops it. The last line is "N passed, M failed"; the exit status is
# non-zero on any failure.
#
# Environment knobs (all optional):
#   PYTHON                     interpreter for the venv (default: python3)
#   CONFORMANCE_START_TIMEOUT  seconds to wait for the listening line (default 30)
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
TTL=3600 # > 30: both reference clients refresh tokens 30 s before expiry

# shellcheck source=../emulator.sh
source "$REPO/tests/emulator.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
OUTPUT=""
TESTS_RAN=0
CLOSING="" # the suite's "N passed, M failed" line

log() { echo "conformance: $*" >&2; }

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then emulator_stop show; else emulator_stop; fi
    if [[ -n "$OUTPUT" ]]; then rm -f "$OUTPUT"; fi
    # A failed run ends on a count, whatever was printed since the suite's.
    conformance_final_count "$rc" "$TESTS_RAN" "$CLOSING"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- venv
conformance_venv "$VENV" "$REQS" "$PYTHON"

# ---------------------------------------------------------------- emulator
log "building evolution-emulator"
(cd "$REPO" && cargo build --quiet -p evolution-emulator --bin evolution-emulator)
TARGET_DIR="$(
    cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
)"
EMULATOR="$TARGET_DIR/debug/evolution-emulator"
[[ -x "$EMULATOR" ]] || { log "no binary at $EMULATOR"; exit 1; }

EMULATOR_START_TIMEOUT="$START_TIMEOUT" emulator_start "$EMULATOR" --port 0 --ttl "$TTL" \
    --key "$KEY_ID:$SECRET" || exit 1
ROOT="$EMULATOR_ROOT"
log "emulator pid $EMULATOR_PID at $ROOT"

# ---------------------------------------------------------------- tests
TESTS_RAN=1
OUTPUT="$(mktemp "${TMPDIR:-/tmp}/conformance-output.XXXXXX")"
status=0
EMULATOR_ROOT="$ROOT" EMULATOR_KEY_ID="$KEY_ID" EMULATOR_SECRET="$SECRET" \
    EMULATOR_MODEL="$MODEL" LOG_LEVEL=WARNING PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    conformance_suite "$OUTPUT" "$TEST_TIMEOUT" "$VENV/bin/python" "$HERE/test_conformance.py" ||
    status=$?
CLOSING="$CONFORMANCE_CLOSING"
exit "$status"
