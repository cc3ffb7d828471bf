#!/usr/bin/env bash
# One spate-bench process holding 40,000 viewer connections on a box whose
# per-process fd limit is 20,000 (bench/scenarios/conn-40k.toml: HTTP-FLV of
# a tiny stream, 3 viewer rings, sources 127.0.0.2–40), against a release
# Spate with 3 workers (each worker's direct-descriptor table is capped by the
# same fd limit, so 40,000 viewers need 3). Bounded: ~10 s connecting, 5 s
# warm-up, 20 s measured.
#
#   scripts/bench-40k.sh                  # takes /tmp/spate-bench.lock itself
#   COUNT=42000 scripts/bench-40k.sh      # another viewer count (3 rings ≤ 60,000)
#   PROTOCOL=rtmp scripts/bench-40k.sh    # viewers of another engine: http-flv
#                                         # (default), rtmp, http-ts, hls, dash
#   SPATE=path BENCH=path scripts/bench-40k.sh   # these binaries, no build
#
# Prints spate-bench's table, then the most connections it held at once and
# its fd count (/proc/PID/fd, sampled every second from outside, and its own
# per-second count); fails unless ≥ COUNT connections were held at once with
# fewer than 20,000 fds open. Output in $OUT (default target/bench-40k).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SPATE_BENCH_LOCKED:-}" ]; then
    # Build first, then wait for the box (other measurements) and run.
    if [ -z "${SPATE:-}" ] || [ -z "${BENCH:-}" ]; then
        cargo build --release -q -p spate-engine -p spate-bench
    fi
    SPATE_BENCH_LOCKED=1 exec flock /tmp/spate-bench.lock "$0" "$@"
fi
WORK=${WORK:-/tmp/spate-bench-40k}
COUNT=${COUNT:-40000}
PROTOCOL=${PROTOCOL:-http-flv}
OUT=${OUT:-target/bench-40k/$PROTOCOL}
case "$PROTOCOL" in
    http-flv) URL='{http}/{stream}.flv' ;;
    rtmp) URL='{rtmp}/live/{stream}' ;;
    http-ts) URL='{http}/{stream}.ts' ;;
    hls) URL='{http}/hls/{stream}/media.m3u8' ;;
    dash) URL='{http}/cmaf/{stream}/index.mpd' ;;
    *) echo "bench-40k.sh: PROTOCOL must be http-flv, rtmp, http-ts, hls or dash" >&2; exit 2 ;;
esac
HTTP_PORT=18190
RTMP_PORT=11945
SPATE=${SPATE:-target/release/spate}
BENCH=${BENCH:-target/release/spate-bench}
mkdir -p "$OUT" "$WORK/www"
echo "fd limit of this shell: $(ulimit -n)"
cat >"$WORK/spate.toml" <<TOML
[server]
bind = "127.0.0.1"
workers = 3
pin_workers = false

[http]
port = $HTTP_PORT
root = "$WORK/www"
max_connections_per_worker = 19000

[rtmp]
port = $RTMP_PORT

[api]
enabled = false

[log]
level = "warn"

[[stream]]
name = "live"
TOML
sed -e "s/^count = 40000/count = $COUNT/" \
    -e "s/^protocol = \"http-flv\"/protocol = \"$PROTOCOL\"/" \
    -e "s|^url = \"{http}/{stream}.flv\"|url = \"$URL\"|" \
    bench/scenarios/conn-40k.toml >"$WORK/conn.toml"
grep -q "^protocol = \"$PROTOCOL\"" "$WORK/conn.toml" && grep -qF "url = \"$URL\"" "$WORK/conn.toml" || {
    echo "bench-40k.sh: could not set the viewers' protocol in $WORK/conn.toml" >&2; exit 2; }

SPID=
SAMPLER=
stop() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    [ -n "$SPID" ] || return 0
    kill "$SPID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}
trap stop EXIT
"$SPATE" --config "$WORK/spate.toml" >"$WORK/spate.log" 2>&1 &
SPID=$!
for _ in $(seq 200); do ss -ltn | grep -q "127.0.0.1:$RTMP_PORT " && break; sleep 0.05; done

"$BENCH" run "$WORK/conn.toml" --target "http://127.0.0.1:$HTTP_PORT" \
    --rtmp "rtmp://127.0.0.1:$RTMP_PORT" --server-pid "$SPID" --json "$OUT/conn-40k.json" \
    2>"$OUT/conn-40k.progress" >"$OUT/conn-40k.txt" &
BPID=$!
# From outside: spate-bench's open fds, its limit, and its sockets, once a second.
(
    while kill -0 "$BPID" 2>/dev/null; do
        fds=$(ls /proc/$BPID/fd 2>/dev/null | wc -l)
        echo "$(date +%s) fds $fds"
        sleep 1
    done
) >"$OUT/conn-40k.fds" &
SAMPLER=$!
sleep 2
grep 'open files' /proc/$BPID/limits || true
rc=0
wait "$BPID" || rc=$?
wait "$SAMPLER" 2>/dev/null || true
SAMPLER=
cat "$OUT/conn-40k.txt"
echo "(spate-bench exited $rc: 1 = ran but not clean)"
python3 - "$OUT/conn-40k.json" "$OUT/conn-40k.fds" "$COUNT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
step = r["steps"][-1]
tl = step["timeline"]
held = max(s["connected"] for s in tl)
secs_all = sum(1 for s in tl if s["connected"] >= int(sys.argv[3]))
own = max(s.get("client_fds", 0) for s in tl)
outside = max(int(l.split()[2]) for l in open(sys.argv[2]) if l.strip())
cpu = [s["client_cpu"] for s in tl if s["phase"] == "measure"]
scpu = [s["server_cpu"] or 0 for s in tl if s["phase"] == "measure"]
print(f"held at once: {held} connections ({secs_all} s with all {sys.argv[3]} open); "
      f"spate-bench fds at most: {outside} (/proc/PID/fd from outside), {own} (its own count); "
      f"CPU while measured: bench {sum(cpu)/max(len(cpu),1):.2f}, server {sum(scpu)/max(len(scpu),1):.2f} cores")
ok = held >= int(sys.argv[3]) and outside < 20000
print("40k proof:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
