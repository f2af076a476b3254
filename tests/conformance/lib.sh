# What the conformance scripts share: the pinned venv, and a suite run whose last line is
# always a count. Sourced by tests/conformance/run.sh and tests/conformance/gateway.sh:
#
#   source "$HERE/lib.sh"
#   conformance_venv "$VENV" "$REQS" "$PYTHON"      # create, or reuse if up to date
#   conformance_suite "$OUTPUT" "$TIMEOUT" CMD...   # run; sets CONFORMANCE_CLOSING
#   conformance_final_count "$rc" "$TESTS_RAN" "$CLOSING"   # in the EXIT trap, last
#
# Both log through a `log` function the sourcing script defines.

# Creates VENV from REQS with PYTHON, or reuses it if a previous install completed with
# the same requirements and interpreter (the stamp is written last, so a broken install
# is redone).
conformance_venv() {
    local venv="$1" reqs="$2" python="$3" stamp_value stamp_file
    stamp_value="$(
        {
            cat "$reqs"
            "$python" -c 'import sys; print(sys.version)'
        } | sha256sum | cut -d' ' -f1
    )"
    stamp_file="$venv/.conformance-stamp"
    if [[ -x "$venv/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]]; then
        log "reusing $venv"
        return 0
    fi
    log "creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$stamp_value" >"$stamp_file"
}

# Runs CMD... under `timeout TIMEOUT`, its output shown and kept in OUTPUT, and returns
# its status, made non-zero unless the suite's own last line counts a pass and no failure.
#
# Sets CONFORMANCE_CLOSING to the count a failed run must end on: the suite's own (to be
# repeated after whatever the caller prints next), or, if the suite died before or after
# its count, one that adds the death as a failure. Empty on success: the count was printed
# already, and nothing follows it.
CONFORMANCE_CLOSING=""
conformance_suite() {
    local output="$1" timeout="$2" status passed failed closing
    shift 2
    set +e
    timeout --kill-after=10 "$timeout" "$@" | tee "$output"
    status=${PIPESTATUS[0]}
    set -e
    closing="$(tail -n 1 "$output")"
    if [[ $status -eq 0 ]] && grep -Eq '^[1-9][0-9]* passed, 0 failed$' <<<"$closing"; then
        CONFORMANCE_CLOSING=""
        return 0
    fi
    if ! grep -Eq '^[0-9]+ passed, [1-9][0-9]* failed$' <<<"$closing"; then
        if [[ $status -eq 124 ]]; then log "suite timed out after ${timeout}s"; fi
        if [[ $status -ne 0 ]]; then log "suite exited with status $status"; fi
        passed="$(grep -c '^PASS ' "$output" || true)"
        failed="$(grep -c '^FAIL ' "$output" || true)"
        closing="$passed passed, $((failed + 1)) failed"
    fi
    CONFORMANCE_CLOSING="$closing"
    if [[ $status -eq 0 ]]; then status=1; fi
    return "$status"
}

# In a failed run's EXIT trap (RC non-zero), prints the count the run must end on: CLOSING
# (the suite's, repeated after the logs printed since), or, if the suite never ran (RAN is
# 0), the set-up counted as one failure. Prints nothing for a run that passed.
conformance_final_count() {
    local rc="$1" ran="$2" closing="$3"
    if [[ $rc -eq 0 ]]; then return 0; fi
    if [[ $ran -eq 0 ]]; then
        echo "0 passed, 1 failed"
    elif [[ -n "$closing" ]]; then
        echo "$closing"
    fi
    return 0
}
