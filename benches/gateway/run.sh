#!/usr/bin/env bash
# The gateway's bench: `evolution gateway` against the emulator directly and against the
# LiteLLM proxy, in one run, on loopback.
#
#   bash benches/gateway/run.sh            # about 9 minutes once built; prints markdown tables
#
# 1. oha 1.16.0 (from PATH, or `cargo install --locked` into benches/gateway/.tools), the
#    LiteLLM proxy venv (benches/gateway/.venv from requirements.txt: litellm[proxy]==1.79.1
#    and every dependency pinned), and release builds of evolution-emulator, evolution and
#    the examples gateway_ttfb (benches) and hold_streams (emulator);
# 2. one emulator; one gateway in front of it (no gateway keys, loopback); one LiteLLM
#    proxy in front of it (one worker), given a token obtained once from the emulator's
#    IAM, since LiteLLM has no IAM exchange;
# 3. open-loop load (oha -q RATE --latency-correction, DURATION seconds each), direct to
#    the emulator and through the gateway at each of RATES: p50/p99/max and the added
#    latency per percentile; the highest rate at which p99 added stays ≤ 1 ms;
# 4. the same at PEER_RATES, with LiteLLM beside them; closed-loop throughput (oha -c 50,
#    no rate) of the emulator, the gateway and LiteLLM;
# 5. time to first chunk of a stream, direct and through the gateway (gateway_ttfb,
#    TTFB_N sequential streams each);
# 6. the gateway's RSS (VmRSS) idle and at its peak with each of STREAMS slow streams open
#    at once (hold_streams --watch-pid; the emulator paces streams with
#    --stream-interval-ms): HTTP/1.1 on both sides, an HTTP/2 (h2c, --upstream-h2c)
#    upstream behind HTTP/1.1 clients, and HTTP/2 on both sides (one client connection);
#    a fresh emulator and gateway per row.
#
# Everything runs on this machine: the load generator, the gateway, the emulator and
# LiteLLM share its cores (2 on the machine this was written for), which the numbers
# include. Every step has a time limit; every process started here is stopped on exit.
#
# Environment knobs: DURATION (seconds per oha run, default 10), RATES (default
# "500 1000 2000 3000 4000 5000"), PEER_RATES (default "50 100"), TTFB_N (default 200),
# STREAMS (default "1000 10000"), VARIANTS (memory rows' upstream/client protocols, default
# "http1/http1 http2/http1 http2/http2"), SKIP (words: latency, litellm, ttfb,
# memory), PYTHON (venv interpreter, default python3), RESULTS (directory for the raw
# results; default a temporary one, removed).
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
REQS="$HERE/requirements.txt"
PYTHON="${PYTHON:-python3}"
OHA_VERSION="1.16.0"
DURATION="${DURATION:-10}"
read -r -a RATES <<<"${RATES:-500 1000 2000 3000 4000 5000}"
read -r -a PEER_RATES <<<"${PEER_RATES:-50 100}"
read -r -a STREAMS <<<"${STREAMS:-1000 10000}"
read -r -a VARIANTS <<<"${VARIANTS:-http1/http1 http2/http1 http2/http2}"
TTFB_N="${TTFB_N:-200}"
SKIP=" ${SKIP:-} "
KEY_ID="bench-key"
SECRET="bench-secret"
MODEL="demo-model"
CONNECTIONS=50 # oha -c, open and closed loop
# A slow stream: STREAM_CHUNKS content events STREAM_INTERVAL_MS apart (about 35 s: under the
# upstream request timeout's default of 60 s), long enough for 10,000 to be open at once.
STREAM_INTERVAL_MS=1500
STREAM_CHUNKS=20

log() { echo "gateway-bench: $*" >&2; }
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
# LiteLLM is measured with the latency rows or not at all.
if skipped latency; then SKIP="$SKIP litellm "; fi

# shellcheck source=../../tests/emulator.sh
source "$REPO/tests/emulator.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench.XXXXXX")"
RESULTS="${RESULTS:-$WORK/results}"
mkdir -p "$RESULTS"
GATEWAY_PID=""
LITELLM_PID=""

stop_pid() { # PID [GRACE_SECONDS]: TERM, then KILL after the grace
    local pid="$1" grace="${2:-10}" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_pid "$GATEWAY_PID"
    # LiteLLM runs in its own session (setsid): stop the whole group it may have forked.
    if [[ -n "$LITELLM_PID" ]] && kill -0 "$LITELLM_PID" 2>/dev/null; then
        kill -TERM -- "-$LITELLM_PID" 2>/dev/null || true
        stop_pid "$LITELLM_PID"
        kill -KILL -- "-$LITELLM_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 ]]; then emulator_stop show; else emulator_stop; fi
    if [[ $rc -ne 0 && -n "${GATEWAY_LOG:-}" && -s "${GATEWAY_LOG:-}" ]]; then
        echo "gateway log (last 20 lines):" >&2
        tail -n 20 "$GATEWAY_LOG" >&2 || true
    fi
    rm -rf "$WORK" # RESULTS, if given, lies elsewhere
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# 10,000 streams over HTTP/1.1 hold 10,000 sockets in the holder, 20,000 in the gateway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT="$(ulimit -n)"

# ---------------------------------------------------------------- tools
OHA="$(command -v oha || true)"
if [[ -z "$OHA" ]]; then
    OHA="$HERE/.tools/bin/oha"
    if [[ ! -x "$OHA" ]]; then
        log "installing oha $OHA_VERSION into $HERE/.tools (a few minutes)"
        CARGO_TARGET_DIR="$WORK/oha-target" timeout 1800 cargo install oha \
            --version "$OHA_VERSION" --locked --root "$HERE/.tools" --quiet
        rm -rf "$WORK/oha-target"
    fi
fi
"$OHA" --help | grep -q -- --latency-correction || { log "$OHA has no --latency-correction"; exit 1; }

if ! skipped litellm; then
    stamp_value="$({ cat "$REQS"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
    stamp_file="$VENV/.bench-stamp"
    if [[ -x "$VENV/bin/litellm" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]]; then
        log "reusing $VENV"
    else
        log "creating $VENV (LiteLLM proxy 1.79.1)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        timeout 900 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
        echo "$stamp_value" >"$stamp_file"
    fi
fi

log "building evolution-emulator, evolution, gateway_ttfb and hold_streams (release)"
(cd "$REPO" && timeout 2400 cargo build --quiet --release -p evolution-emulator -p evolution-cli --bins)
(cd "$REPO" && timeout 1200 cargo build --quiet --release -p evolution-benches --example gateway_ttfb)
(cd "$REPO" && timeout 1200 cargo build --quiet --release -p evolution-emulator --example hold_streams)
TARGET_DIR="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
EMULATOR="$TARGET_DIR/release/evolution-emulator"
GATEWAY="$TARGET_DIR/release/evolution"
TTFB="$TARGET_DIR/release/examples/gateway_ttfb"
HOLDER="$TARGET_DIR/release/examples/hold_streams"

# ---------------------------------------------------------------- processes
GATEWAY_URL=""
GATEWAY_LOG=""
# gateway_start ROOT [FLAGS...]: a release gateway in front of the emulator at ROOT, no
# gateway keys (loopback), settings from the environment only (run from an empty
# directory, so that no .env is read).
gateway_start() {
    local root="$1" line="" i
    shift
    mkdir -p "$WORK/run"
    GATEWAY_LOG="$WORK/gateway.log"
    # A previous gateway's listening line must not be read as this one's.
    rm -f "$WORK/gateway.out" "$GATEWAY_LOG"
    (cd "$WORK/run" && exec env -u EVOLUTION_GATEWAY_KEYS -u EVOLUTION_REDIS_URL \
        -u EVOLUTION_BACKUP_KEY_ID -u EVOLUTION_BACKUP_SECRET RUST_LOG=warn \
        EVOLUTION_KEY_ID="$KEY_ID" EVOLUTION_SECRET="$SECRET" EVOLUTION_MODEL="$MODEL" \
        EVOLUTION_BASE_URL="$root/v1" EVOLUTION_TOKEN_URL="$root/api/v1/auth/token" \
        "$GATEWAY" gateway --listen 127.0.0.1:0 "$@") >"$WORK/gateway.out" 2>"$GATEWAY_LOG" &
    GATEWAY_PID=$!
    for ((i = 0; i < 300; i++)); do
        line="$(head -n 1 "$WORK/gateway.out" 2>/dev/null || true)"
        if [[ "$line" =~ ^listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]]; then
            GATEWAY_URL="${BASH_REMATCH[1]}"
            # The first call fetches the token: not part of any measurement.
            curl -fsS --max-time 10 -o /dev/null "$GATEWAY_URL/v1/chat/completions" \
                -H 'content-type: application/json' --data-binary @"$BODY_FILE"
            return 0
        fi
        kill -0 "$GATEWAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "the gateway did not start (first line: ${line:-<none>}):"
    cat "$GATEWAY_LOG" >&2
    return 1
}

gateway_stop() {
    stop_pid "$GATEWAY_PID"
    GATEWAY_PID=""
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

iam_token() {
    curl -fsS --max-time 10 "$1/api/v1/auth/token" -H 'content-type: application/json' \
        -d "{\"keyId\": \"$KEY_ID\", \"secret\": \"$SECRET\"}" |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

BODY_FILE="$WORK/chat.json"
printf '{"model": "%s", "messages": [{"role": "user", "content": "Привет!"}]}' "$MODEL" >"$BODY_FILE"

# oha_run NAME URL RATE|closed [OHA ARGS...]: one oha run into $RESULTS/NAME.json.
oha_run() {
    local name="$1" url="$2" rate="$3" mode=()
    shift 3
    if [[ "$rate" != closed ]]; then mode=(-q "$rate" --latency-correction); fi
    log "oha $name: ${DURATION}s at ${rate} req/s"
    # -w: calls in flight at the deadline are awaited, not counted as errors.
    timeout $((DURATION + 60)) "$OHA" -z "${DURATION}s" -w -c "$CONNECTIONS" "${mode[@]}" \
        --no-tui --output-format json -m POST -H 'content-type: application/json' \
        -D "$BODY_FILE" "$@" "$url" >"$RESULTS/$name.json"
}

# ---------------------------------------------------------------- latency and throughput
RUST_LOG=warn emulator_start "$EMULATOR" --port 0 --ttl 86400 --key "$KEY_ID:$SECRET" || exit 1
ROOT="$EMULATOR_ROOT"
TOKEN="$(iam_token "$ROOT")"
DIRECT=(-H "Authorization: Bearer $TOKEN")
gateway_start "$ROOT"
log "emulator at $ROOT, gateway at $GATEWAY_URL; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

if ! skipped litellm; then
    LITELLM_PORT="$(free_port)"
    cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: $MODEL
    litellm_params:
      model: openai/$MODEL
      api_base: $ROOT/v1
      api_key: $TOKEN
EOF
    log "starting LiteLLM proxy (one worker) on port $LITELLM_PORT"
    mkdir -p "$WORK/run"
    (cd "$WORK/run" && exec setsid env LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
        "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 \
        --port "$LITELLM_PORT" --num_workers 1 --telemetry False) >"$WORK/litellm.log" 2>&1 &
    LITELLM_PID=$!
    LITELLM_URL="http://127.0.0.1:$LITELLM_PORT"
    deadline=$((SECONDS + 120))
    while ((SECONDS < deadline)); do
        curl -fsS --max-time 5 -o /dev/null "$LITELLM_URL/v1/chat/completions" \
            -H 'content-type: application/json' --data-binary @"$BODY_FILE" 2>/dev/null && break
        kill -0 "$LITELLM_PID" 2>/dev/null || { tail -n 30 "$WORK/litellm.log" >&2; exit 1; }
        sleep 0.1
    done
    curl -fsS --max-time 5 -o /dev/null "$LITELLM_URL/v1/chat/completions" \
        -H 'content-type: application/json' --data-binary @"$BODY_FILE" ||
        { log "LiteLLM did not answer within 120 s"; tail -n 30 "$WORK/litellm.log" >&2; exit 1; }
fi

if ! skipped latency; then
    # Warm-up: connections, allocator.
    DURATION=2 oha_run warm-direct "$ROOT/v1/chat/completions" 1000 "${DIRECT[@]}"
    DURATION=2 oha_run warm-gateway "$GATEWAY_URL/v1/chat/completions" 1000
    for rate in "${RATES[@]}"; do
        oha_run "direct-$rate" "$ROOT/v1/chat/completions" "$rate" "${DIRECT[@]}"
        oha_run "gateway-$rate" "$GATEWAY_URL/v1/chat/completions" "$rate"
    done
    if ! skipped litellm; then
        for rate in "${PEER_RATES[@]}"; do
            oha_run "direct-$rate" "$ROOT/v1/chat/completions" "$rate" "${DIRECT[@]}"
            oha_run "gateway-$rate" "$GATEWAY_URL/v1/chat/completions" "$rate"
            oha_run "litellm-$rate" "$LITELLM_URL/v1/chat/completions" "$rate"
        done
    fi
    oha_run closed-direct "$ROOT/v1/chat/completions" closed "${DIRECT[@]}"
    oha_run closed-gateway "$GATEWAY_URL/v1/chat/completions" closed
    if ! skipped litellm; then
        oha_run closed-litellm "$LITELLM_URL/v1/chat/completions" closed
        kill -TERM -- "-$LITELLM_PID" 2>/dev/null || true
        stop_pid "$LITELLM_PID"
        LITELLM_PID=""
    fi
fi

# ---------------------------------------------------------------- time to first chunk
if ! skipped ttfb; then
    log "time to first chunk: $TTFB_N streams each, direct and through the gateway"
    MODEL="$MODEL" timeout 300 "$TTFB" "$ROOT/v1/chat/completions" "$TOKEN" \
        "$GATEWAY_URL/v1/chat/completions" "$TTFB_N" >"$RESULTS/ttfb.json"
fi
gateway_stop
emulator_stop

# ---------------------------------------------------------------- memory per open stream
# Rows: upstream protocol (gateway to emulator) / client protocol (holder to gateway).
: >"$RESULTS/memory.tsv"
if ! skipped memory; then
    for variant in "${VARIANTS[@]}"; do
        upstream="${variant%/*}" client="${variant#*/}"
        emulator_flags=() gateway_flags=() holder_flags=()
        if [[ $upstream == http2 ]]; then emulator_flags=(--http2) gateway_flags=(--upstream-h2c); fi
        if [[ $client == http2 ]]; then holder_flags=(--http2); fi
        for n in "${STREAMS[@]}"; do
            # Over HTTP/1.1 on both sides the gateway holds two sockets per stream: keep
            # within the open-files limit (20,000 on the machine this was written for, and
            # not raisable there), and say so in the table.
            if [[ $upstream == http1 && "$FD_LIMIT" != unlimited ]] && ((2 * n + 200 > FD_LIMIT)); then
                capped=$(((FD_LIMIT - 200) / 2))
                log "memory: $n streams over HTTP/1.1 need $((2 * n)) sockets in the gateway, ulimit -n is $FD_LIMIT: $capped instead"
                n=$capped
            fi
            RUST_LOG=warn emulator_start "$EMULATOR" --port 0 --ttl 86400 \
                --key "$KEY_ID:$SECRET" --stream-interval-ms "$STREAM_INTERVAL_MS" \
                --stream-chunks "$STREAM_CHUNKS" "${emulator_flags[@]}" || exit 1
            gateway_start "$EMULATOR_ROOT" --max-in-flight $((n * 2)) "${gateway_flags[@]}"
            sleep 1
            log "memory: $n streams, upstream $upstream, client $client"
            # The gateway has no keys: the bearer is only there because the holder sends one.
            timeout $((STREAM_INTERVAL_MS * (STREAM_CHUNKS + 5) / 1000 + 300)) "$HOLDER" \
                --root "$GATEWAY_URL" --bearer unused --streams "$n" --model "$MODEL" \
                --watch-pid "$GATEWAY_PID" "${holder_flags[@]}" >"$WORK/holder.out" ||
                log "memory: hold_streams exited with status $?"
            streams_line="$(grep -m1 '^streams=' "$WORK/holder.out" || true)"
            if [[ -z "$streams_line" ]]; then
                log "memory: no result for $n streams ($upstream upstream, $client client)"
                gateway_stop
                emulator_stop
                continue
            fi
            if grep -q '^error' "$WORK/holder.out"; then
                log "streams that failed:"
                grep '^error' "$WORK/holder.out" >&2
            fi
            rss_line="$(grep -m1 '^rss ' "$WORK/holder.out")"
            printf '%s\t%s\t%s\t%s\t%s\n' "$upstream" "$client" "$n" "$streams_line" "$rss_line" \
                >>"$RESULTS/memory.tsv"
            gateway_stop
            emulator_stop
        done
    done
fi

# ---------------------------------------------------------------- report
"$PYTHON" - "$RESULTS" "$DURATION" "$TTFB_N" "$("$OHA" --version)" "${RATES[*]}" "${PEER_RATES[*]}" <<'PY'
import json, os, sys

results, duration, ttfb_n, oha, rates, peer_rates = sys.argv[1:7]
rates = [int(r) for r in rates.split()]
peer_rates = [int(r) for r in peer_rates.split()]


def load(name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    d = json.load(open(path))
    statuses = d.get("statusCodeDistribution", {})
    ok = statuses.get("200", 0)
    errors = sum(statuses.values()) - ok + sum(d.get("errorDistribution", {}).values())
    p = d["latencyPercentiles"]
    return {
        "p50": p["p50"] * 1e3, "p99": p["p99"] * 1e3, "max": d["summary"]["slowest"] * 1e3,
        "rps": d["summary"]["requestsPerSec"], "ok": ok, "errors": errors,
    }


def ms(x):
    return "–" if x is None else f"{x:.2f}"


def added_ms(x):
    return "–" if x is None else f"{x:+.2f}"


cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
print()
print(f"Gateway bench: {os.cpu_count()} cores ({cpu}), shared by the load generator ({oha}), "
      f"the gateway, the emulator and LiteLLM; {duration} s per oha run, open loop with latency "
      f"correction, 50 connections. LiteLLM proxy 1.79.1, one worker, holds a token obtained once "
      f"from the emulator's IAM (it has no IAM exchange). Latencies in ms.")
best = None
measured = [r for r in rates if load(f"direct-{r}") and load(f"gateway-{r}")]
if measured:
    print()
    print("| req/s | direct p50 | p99 | max | gateway p50 | p99 | max | added p50 | added p99 "
          "| added max | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for rate in measured:
    d, g = load(f"direct-{rate}"), load(f"gateway-{rate}")
    added = {k: g[k] - d[k] for k in ("p50", "p99", "max")}
    if added["p99"] <= 1.0 and g["errors"] == 0:
        best = rate if best is None else max(best, rate)
    print(f"| {rate:,} | {ms(d['p50'])} | {ms(d['p99'])} | {ms(d['max'])} | {ms(g['p50'])} | "
          f"{ms(g['p99'])} | {ms(g['max'])} | {added_ms(added['p50'])} | {added_ms(added['p99'])} | "
          f"{added_ms(added['max'])} | {d['errors'] + g['errors']} |")
if measured:
    print()
    print(f"Highest rate with p99 added ≤ 1 ms: {best if best is not None else 'none'} req/s "
          f"(of {', '.join(f'{r:,}' for r in measured)}).")

if any(load(f"litellm-{r}") for r in peer_rates):
    print()
    print("| req/s | target | p50 | p99 | max | added p99 | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for rate in peer_rates:
        d = load(f"direct-{rate}")
        for target in ("direct", "gateway", "litellm"):
            r = load(f"{target}-{rate}")
            if not r:
                continue
            add = "" if target == "direct" or not d else added_ms(r["p99"] - d["p99"])
            print(f"| {rate:,} | {target} | {ms(r['p50'])} | {ms(r['p99'])} | {ms(r['max'])} | "
                  f"{add} | {r['errors']} |")

closed = {t: load(f"closed-{t}") for t in ("direct", "gateway", "litellm")}
if any(closed.values()):
    print()
    print("| closed loop, 50 connections | req/s | p50 | p99 | errors |")
    print("|---|---:|---:|---:|---:|")
    for t, r in closed.items():
        if r:
            print(f"| {t} | {r['rps']:,.0f} | {ms(r['p50'])} | {ms(r['p99'])} | {r['errors']} |")
    if closed["gateway"] and closed["litellm"] and closed["litellm"]["rps"] > 0:
        ratio = closed["gateway"]["rps"] / closed["litellm"]["rps"]
        print()
        print(f"Gateway / LiteLLM closed-loop throughput: {ratio:.0f}× (target ≥ 50×).")

path = os.path.join(results, "ttfb.json")
if os.path.exists(path):
    t = json.load(open(path))
    print()
    print(f"| time to first chunk, {t['n']} sequential streams | p50 µs | p99 µs | max µs |")
    print("|---|---:|---:|---:|")
    for k in ("direct", "gateway", "added"):
        # A difference of two maxima (single outliers) says nothing: no added max.
        top = "" if k == "added" else t[k]['max_us']
        print(f"| {k} | {t[k]['p50_us']} | {t[k]['p99_us']} | {top} |")

path = os.path.join(results, "memory.tsv")
rows = [line.rstrip("\n").split("\t") for line in open(path)] if os.path.exists(path) else []
if rows:
    print()
    print("| upstream | client | streams | open at once | failed | idle RSS MiB | peak RSS MiB "
          "| KB per stream above idle |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for upstream, client, n, streams_line, rss_line in rows:
        f = dict(kv.split("=", 1) for kv in (streams_line + " " + rss_line).split() if "=" in kv)
        n, base, peak = int(n), int(f["baseline"]), int(f["peak"])
        per = (peak - base) * 1024 / n / 1000
        print(f"| {upstream} | {client} | {n:,} | {int(f['open_max']):,} | {f['failed']} | "
              f"{base / 1024:.1f} | {peak / 1024:.1f} | {per:.1f} |")
PY
