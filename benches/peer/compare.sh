#!/usr/bin/env bash
# evolution-rs against the reference client, on one loopback server, in one run.
#
#   bash benches/peer/compare.sh [N]        # N requests per row (default 5000)
#
# 1. creates/reuses benches/peer/.venv with evolution-langchain==1.0.0 (its dependencies
#    constrained to the versions pinned in tests/conformance/requirements.txt);
# 2. builds evolution-emulator and evolution (release) and starts ONE emulator on a
#    free loopback port;
# 3. runs, against that server, N calls of the reference client (`EvolutionInference.invoke`
#    of evolution-langchain): sequentially, then from 8 threads (ThreadPoolExecutor);
#    then `evolution bench --requests N` at concurrency 1, 8 and 64;
# 4. prints a table of req/s and each row's ratio to the reference's best row.
#
# Every step has a time limit (about 2 minutes in all at N=5000 on 2 cores, once built);
# the emulator is stopped on any exit.
#
# Environment knobs: PYTHON (venv interpreter, default python3).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"
N="${1:-5000}"
PIN="evolution-langchain==1.0.0"
CONSTRAINTS="$REPO/tests/conformance/requirements.txt"

[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N]" >&2; exit 2; }

log() { echo "compare: $*" >&2; }

# shellcheck source=../../tests/emulator.sh
source "$REPO/tests/emulator.sh"
trap 'rc=$?; emulator_stop; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- venv
stamp_value="$(
    {
        echo "$PIN"
        [[ -f "$CONSTRAINTS" ]] && cat "$CONSTRAINTS"
        "$PYTHON" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"
stamp_file="$VENV/.compare-stamp"
if [[ -x "$VENV/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]]; then
    log "reusing $VENV"
else
    log "creating $VENV with $PIN"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    constraints=()
    [[ -f "$CONSTRAINTS" ]] && constraints=(-c "$CONSTRAINTS")
    timeout 300 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "${constraints[@]}" "$PIN"
    echo "$stamp_value" >"$stamp_file"
fi

# ---------------------------------------------------------------- binaries
log "building evolution-emulator and evolution (release)"
(cd "$REPO" && cargo build --quiet --release -p evolution-emulator -p evolution-cli)
TARGET_DIR="$(
    cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
)"
EMULATOR="$TARGET_DIR/release/evolution-emulator"
EVOLUTION="$TARGET_DIR/release/evolution"

# ---------------------------------------------------------------- server
RUST_LOG=warn emulator_start "$EMULATOR" --port 0 || exit 1
ROOT="$EMULATOR_ROOT"
log "one emulator (pid $EMULATOR_PID) at $ROOT; N=$N; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- runs
# Each run prints one JSON object on its last line; keep "name<TAB>json".
RESULTS=()

reference() {
    local threads=$1 name=$2 out
    log "$name"
    out="$(timeout 120 "$VENV/bin/python" "$HERE/reference_client.py" \
        --root "$ROOT" --requests "$N" --threads "$threads" | tail -n 1)"
    RESULTS+=("$name"$'\t'"$out")
}

evolution() {
    local concurrency=$1 name=$2 out
    log "$name"
    out="$(EVOLUTION_KEY_ID=demo-key-id EVOLUTION_SECRET=demo-secret EVOLUTION_MODEL=demo-model \
        EVOLUTION_BASE_URL="$ROOT/v1" EVOLUTION_TOKEN_URL="$ROOT/api/v1/auth/token" \
        timeout 60 "$EVOLUTION" bench --requests "$N" --concurrency "$concurrency" --json | tail -n 1)"
    RESULTS+=("$name"$'\t'"$out")
}

reference 1 "evolution-langchain 1.0.0, sequential"
reference 8 "evolution-langchain 1.0.0, 8 threads"
evolution 1 "evolution bench, concurrency 1"
evolution 8 "evolution bench, concurrency 8"
evolution 64 "evolution bench, concurrency 64"

# ---------------------------------------------------------------- table
printf '%s\n' "${RESULTS[@]}" | "$VENV/bin/python" -c '
import json, sys
rows = []
for line in sys.stdin:
    name, _, data = line.rstrip("\n").partition("\t")
    d = json.loads(data)
    rows.append((name, d["requests"], d.get("errors", 0), d["rps"]))
best = max(rps for name, _, _, rps in rows if name.startswith("evolution-langchain"))
print()
print("| %-40s | %8s | %6s | %9s | %18s |" % ("client", "requests", "errors", "req/s", "x best reference"))
print("|%s|%s:|%s:|%s:|%s:|" % ("-" * 42, "-" * 9, "-" * 7, "-" * 10, "-" * 19))
for name, requests, errors, rps in rows:
    print("| %-40s | %8d | %6d | %9.0f | %17.1fx |" % (name, requests, errors, rps, rps / best))
if any(errors for _, _, errors, _ in rows):
    sys.exit("some calls failed")
'
