#!/usr/bin/env bash
# Peak resident memory of `evolution bench` (release) against one emulator binary, for
# growing request counts: it should not grow with the count.
#
#   bash benches/memory.sh [N ...]          # default: 100000 1000000
#
# Each count is one `evolution bench --requests N --concurrency 64 --json` run under
# `/usr/bin/time -v` (Debian package `time`); the table shows its peak RSS ("Maximum
# resident set size"), wall time and req/s. One emulator serves every run and is
# stopped on any exit.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$HERE/.." && pwd)"
COUNTS=("$@")
[[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(100000 1000000)
CONCURRENCY="${CONCURRENCY:-64}"

[[ -x /usr/bin/time ]] || { echo "memory: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

# shellcheck source=../tests/emulator.sh
source "$REPO/tests/emulator.sh"
trap 'rc=$?; emulator_stop; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "memory: building evolution-emulator and evolution (release)" >&2
(cd "$REPO" && cargo build --quiet --release -p evolution-emulator -p evolution-cli)
TARGET_DIR="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

RUST_LOG=warn emulator_start "$TARGET_DIR/release/evolution-emulator" --port 0 || exit 1
ROOT="$EMULATOR_ROOT"
echo "memory: emulator at $ROOT; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

printf '\n| %9s | %11s | %7s | %8s | %6s |\n' requests "peak RSS" "wall s" "req/s" errors
printf '|%s:|%s:|%s:|%s:|%s:|\n' ---------- ------------ -------- --------- -------
for n in "${COUNTS[@]}"; do
    report="$(mktemp)"
    json="$(EVOLUTION_KEY_ID=demo-key-id EVOLUTION_SECRET=demo-secret EVOLUTION_MODEL=demo-model \
        EVOLUTION_BASE_URL="$ROOT/v1" EVOLUTION_TOKEN_URL="$ROOT/api/v1/auth/token" \
        /usr/bin/time -v -o "$report" "$TARGET_DIR/release/evolution" bench \
        --requests "$n" --concurrency "$CONCURRENCY" --json | tail -n 1)"
    rss_kib="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$report")"
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$report")"
    rm -f "$report"
    python3 -c '
import json, sys
n, rss_kib, wall, data = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
parts = [float(p) for p in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print("| %9d | %7.1f MiB | %7.1f | %8.0f | %6d |" % (int(n), rss_kib / 1024, seconds, data["rps"], data["errors"]))
' "$n" "$rss_kib" "$wall" "$json"
done
