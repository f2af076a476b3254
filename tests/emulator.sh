# An evolution-emulator binary in the background of a bash script: started on a free
# loopback port, and always stopped. Sourced by tests/conformance/run.sh,
# benches/peer/compare.sh and benches/memory.sh:
#
#   source "$REPO/tests/emulator.sh"
#   trap 'rc=$?; emulator_stop; exit $rc' EXIT      # or call emulator_stop in your own trap
#   emulator_start "$BINARY" --port 0 [ARGS...] || exit 1
#   echo "$EMULATOR_ROOT"                           # e.g. http://127.0.0.1:40123
#
# emulator_start waits for the binary's first line, "evolution-emulator listening on
# ROOT", for EMULATOR_START_TIMEOUT seconds (default 10). Variables set before the call
# (RUST_LOG=warn emulator_start ...) reach the binary.

EMULATOR_PID=""
EMULATOR_LOG=""
EMULATOR_ROOT=""

emulator_start() {
    local timeout="${EMULATOR_START_TIMEOUT:-10}" line="" i
    EMULATOR_LOG="$(mktemp "${TMPDIR:-/tmp}/evolution-emulator.XXXXXX")"
    "$@" >"$EMULATOR_LOG" 2>&1 &
    EMULATOR_PID=$!
    for ((i = 0; i < timeout * 10; i++)); do
        line="$(head -n 1 "$EMULATOR_LOG" 2>/dev/null || true)"
        if [[ "$line" =~ ^evolution-emulator\ listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]]; then
            EMULATOR_ROOT="${BASH_REMATCH[1]}"
            return 0
        fi
        if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
            echo "the emulator exited before listening; its output:" >&2
            cat "$EMULATOR_LOG" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "the emulator did not say where it listens within ${timeout}s (first line: ${line:-<none>})" >&2
    return 1
}

# Stops the emulator (TERM, then KILL after 5 s) and removes its log; with "show", prints
# the log's last 40 lines first.
emulator_stop() {
    if [[ -n "$EMULATOR_PID" ]] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
        kill -TERM "$EMULATOR_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$EMULATOR_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$EMULATOR_PID" 2>/dev/null || true
        wait "$EMULATOR_PID" 2>/dev/null || true
    fi
    if [[ -n "$EMULATOR_LOG" ]]; then
        if [[ "${1:-}" == show && -s "$EMULATOR_LOG" ]]; then
            echo "emulator output (last 40 lines):" >&2
            tail -n 40 "$EMULATOR_LOG" >&2 || true
        fi
        rm -f "$EMULATOR_LOG"
    fi
}
