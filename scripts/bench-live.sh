#!/usr/bin/env bash
# Live streaming: RTMP in, HTTP-FLV / RTMP out. Spate vs nginx-rtmp, measured
# with `spate-bench live` (one RTMP publisher of an FLV file at real-time
# pace + N viewers in one process; server-added latency = viewer arrival −
# publisher send of the same frame, same clock).
#
#   scripts/bench-live.sh                         # everything (~20 min on 2 cores)
#   RUNS=1 DURATION=5 NS="100 1000" CONFIGS="spate-flv nginx-rtmp" scripts/bench-live.sh
#   FIND_MAX=1 LOAD=0 scripts/bench-live.sh       # only the spate HTTP-FLV --find-max ramp
#
# Configs: spate-flv (spate, HTTP-FLV viewers), spate-rtmp (spate, RTMP play
# viewers), nginx-rtmp (Debian nginx + libnginx-mod-rtmp, RTMP play viewers:
# nginx-rtmp has no HTTP-FLV). Both servers run 2 workers on 127.0.0.1 and
# are started fresh for every measurement (a new publish within Spate's
# reconnect grace would continue the old timeline and the bench's timestamp
# matching would refuse it). Results: one JSON per measurement in OUT,
# medians of RUNS in OUT/summary.md.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

DURATION=${DURATION:-20}
RUNS=${RUNS:-3}
NS=${NS:-"100 1000 5000 10000"}
CONFIGS=${CONFIGS:-"spate-flv spate-rtmp nginx-rtmp"}
THREADS=${THREADS:-2}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.40}
LOAD=${LOAD:-1}
FIND_MAX=${FIND_MAX:-1}
STEPS=${STEPS:-"500,1000,2000,5000,10000,15000,20000,25000,30000"}
OUT=${OUT:-$REPO/target/bench-live}
NGINX=${NGINX:-/usr/sbin/nginx}
HTTP_PORT=${HTTP_PORT:-18080}
RTMP_PORT=${RTMP_PORT:-11935}
NGINX_PORT=${NGINX_PORT:-11936}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ -x "$NGINX" ] || { echo "nginx not found (apt-get install -y nginx libnginx-mod-rtmp)" >&2; exit 1; }
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "apt-get install -y libnginx-mod-rtmp" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed for the source file" >&2; exit 1; }

log "building release binaries"
timeout 1200 cargo build --release -p spate-engine -p spate-bench >&2
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/spate-bench-live.XXXXXX)
chmod 755 "$WORK"
cp "$REPO/target/release/spate" "$REPO/target/release/spate-bench" "$WORK/"
SPATE=$WORK/spate
BENCH=$WORK/spate-bench
log "spate from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'), work dir $WORK"

SRC=$OUT/src.flv
if [ ! -s "$SRC" ]; then
    log "making $SRC (30 s, 640x360 30 fps x264 1 Mbit/s, GOP 60, AAC 128k)"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=1000:sample_rate=48000 \
        -t 30 -c:v libx264 -preset ultrafast -b:v 1M -maxrate 1M -bufsize 2M -g 60 \
        -c:a aac -b:a 128k -f flv "$SRC"
fi

mkdir -p "$WORK/www" "$WORK/nginx/logs"
cat >"$WORK/spate.toml" <<EOF
[server]
bind = "127.0.0.1"
workers = 2

[http]
port = $HTTP_PORT
root = "$WORK/www"

[rtmp]
port = $RTMP_PORT

[api]
enabled = false   # not used here; 4242 may be taken

[live]
accept_unknown_streams = true

[[stream]]
name = "live"
EOF
# rtmp_auto_push: with 2 workers a viewer may land on the worker without the
# publisher; auto_push relays the stream to the other worker. Without
# accept_mutex the other worker never accepted the relay here (its unix
# socket kept a pending connection; half the viewers got nothing).
cat >"$WORK/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
rtmp_auto_push on;
worker_processes 2; worker_rlimit_nofile 19500; daemon off; pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 19000; accept_mutex on; }
rtmp { server { listen 127.0.0.1:$NGINX_PORT; chunk_size 4096;
  application live { live on; record off; } } }
EOF

SERVER_PID=
start_server() { # config → sets SERVER_PID and PID_ARGS
    case $1 in
    spate-*)
        "$SPATE" --config "$WORK/spate.toml" >>"$WORK/spate.log" 2>&1 &
        SERVER_PID=$!
        PID_ARGS="--server-pid $SERVER_PID"
        for _ in $(seq 100); do
            ss -ltn | grep -q "127.0.0.1:$RTMP_PORT " && break
            sleep 0.05
        done
        ;;
    nginx-rtmp)
        rm -f "$WORK/nginx/nginx.pid"
        "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >>"$WORK/nginx/logs/out.log" 2>&1 &
        SERVER_PID=$!
        PID_ARGS="--server-pids-from $SERVER_PID"
        for _ in $(seq 100); do
            ss -ltn | grep -q "127.0.0.1:$NGINX_PORT " && break
            sleep 0.05
        done
        sleep 0.3 # workers up
        ;;
    esac
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop_server EXIT

urls() { # config → PUBLISH VIEWER
    case $1 in
    spate-flv) echo "rtmp://127.0.0.1:$RTMP_PORT/live/live+bench http://127.0.0.1:$HTTP_PORT/live+bench.flv" ;;
    spate-rtmp) echo "rtmp://127.0.0.1:$RTMP_PORT/live/live+bench rtmp://127.0.0.1:$RTMP_PORT/live/live+bench" ;;
    nginx-rtmp) echo "rtmp://127.0.0.1:$NGINX_PORT/live/live+bench rtmp://127.0.0.1:$NGINX_PORT/live/live+bench" ;;
    esac
}

if [ "$LOAD" = 1 ]; then
    for run in $(seq 1 "$RUNS"); do
        for cfg in $CONFIGS; do
            for n in $NS; do
                read -r pub view < <(urls "$cfg")
                start_server "$cfg"
                log "run $run $cfg: $n viewers, $DURATION s"
                # shellcheck disable=SC2086
                timeout $((DURATION + 150)) "$BENCH" live --publish "$pub" --source "$SRC" \
                    --viewers "$n" --viewer-url "$view" --duration "$DURATION" \
                    --threads "$THREADS" --sources "$SOURCES" $PID_ARGS --label "$cfg" \
                    --json "$OUT/live-$cfg-n$n-r$run.json" >"$OUT/live-$cfg-n$n-r$run.txt" 2>&1 ||
                    log "  (exit status $?)"
                tail -n +2 "$OUT/live-$cfg-n$n-r$run.txt" | grep -v ' live$' >&2 || true
                stop_server
                sleep 1
            done
        done
    done
fi

if [ "$FIND_MAX" = 1 ]; then
    read -r pub view < <(urls spate-flv)
    start_server spate-flv
    log "find-max: spate HTTP-FLV, steps $STEPS"
    # shellcheck disable=SC2086
    timeout 1200 "$BENCH" live --publish "$pub" --source "$SRC" --viewer-url "$view" \
        --find-max --steps "$STEPS" --step-duration 10 --threads "$THREADS" --sources "$SOURCES" \
        $PID_ARGS --label spate-flv --json "$OUT/findmax-spate-flv.json" \
        >"$OUT/findmax-spate-flv.txt" 2>&1 || log "  (exit status $?)"
    cat "$OUT/findmax-spate-flv.txt" >&2
    stop_server
fi

python3 - "$OUT" "$RUNS" "$NS" "$CONFIGS" >"$OUT/summary.md" <<'PY'
import json, statistics, sys, os
out, runs, ns, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def load(cfg, n):
    rs = []
    for r in range(1, runs + 1):
        p = f"{out}/live-{cfg}-n{n}-r{r}.json"
        if os.path.exists(p):
            rs.append(json.load(open(p))["steps"][0])
    return rs
def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"
rows = {}
print(f"Medians of {runs} runs. Latency = server-added (viewer arrival − publisher send of the same video frame), ms.")
print()
print("| server / viewers | N | up / live | p50 | p99 | p99.9 | max | stalled viewer-s | disconnects | Mbit/s | server CPU s | server CPU s / (viewer·min) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for cfg in configs:
    for n in ns:
        rs = load(cfg, n)
        if not rs:
            continue
        m = lambda k, sub=None: med([(s[k][sub] if sub else s[k]) for s in rs])
        cpu = m("server_cpu_s"); secs = m("seconds")
        row = dict(p50=m("latency_ms", "p50"), p99=m("latency_ms", "p99"), p999=m("latency_ms", "p999"),
                   mx=m("latency_ms", "max"), stall=m("stalled_viewer_seconds"), vs=m("viewer_seconds"),
                   disc=m("disconnects"), mbit=m("mbit_s"), cpu=cpu,
                   up=m("connected"), live=m("live"),
                   cpu_per=(cpu / (int(n) * secs / 60) if cpu is not None and secs else None))
        rows[(cfg, n)] = row
        print(f"| {cfg} | {n} | {row['up']:.0f} / {row['live']:.0f} | {f(row['p50'],3)} | {f(row['p99'],3)} | {f(row['p999'],3)} | {f(row['mx'],1)} | "
              f"{row['stall']:.0f} of {row['vs']:.0f} | {row['disc']:.0f} | {f(row['mbit'],1)} | {f(row['cpu'])} | {f(row['cpu_per'],4)} |")
print()
print("Ratios, like for like (spate-rtmp / nginx-rtmp; < 1 is better for spate on latency and CPU):")
print()
print("| N | p50 | p99 | server CPU s | Mbit/s |")
print("|---:|---:|---:|---:|---:|")
for n in ns:
    a, b = rows.get(("spate-rtmp", n)), rows.get(("nginx-rtmp", n))
    if not a or not b:
        continue
    r = lambda k: (f"{a[k] / b[k]:.2f}" if a[k] is not None and b[k] else "-")
    print(f"| {n} | {r('p50')} | {r('p99')} | {r('cpu')} | {r('mbit')} |")
PY
log "summary in $OUT/summary.md"
cat "$OUT/summary.md" >&2
