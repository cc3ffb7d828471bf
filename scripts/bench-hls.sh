#!/usr/bin/env bash
# Live HLS viewers: Spate vs nginx serving nginx-rtmp's HLS, measured with
# `spate-bench hls` (player-like viewers: poll the media playlist every
# target duration, fetch each new segment once, playback deadlines → stalls;
# the same process publishes the same FLV over RTMP at real-time pace).
#
#   scripts/bench-hls.sh                          # RUNS=3 DURATION=30 NS="5000 10000 14000" (~18 min)
#   RUNS=1 DURATION=10 NS="100 1000" SERVERS="spate" scripts/bench-hls.sh
#   FIND_MAX=1 LOAD=0 scripts/bench-hls.sh        # one --find-max ramp per server instead
#   SPATE_FILE_SEND=splice scripts/bench-hls.sh   # spate's [http] file_send (send, splice, send_zc)
#
# Servers, both started fresh for every measurement on 127.0.0.1, 2 workers:
#   spate  release binary; [server] workers = 2; [http] port; [rtmp] port;
#          [[stream]] name = "live"; HLS at /hls/live+bench/index.m3u8
#          (multivariant → media.m3u8 → <n>.ts, 2 s segments, 6 listed).
#   nginx  Debian nginx + libnginx-mod-rtmp, config as in TESTKIT.md:
#          worker_processes 2, hls on, hls_fragment 2s, hls_playlist_length
#          10s, sendfile on; HLS at /hls/bench.m3u8 (bench-<n>.ts from disk).
# Each measurement: start the server, `spate-bench hls` publishes src.flv to
# it, waits until the playlist lists 4 segments (~8 s), measures 2 s of
# server CPU with no viewers, ramps N viewers in (1000/s), warms up 4 s,
# measures DURATION s, stops. Viewers bind 127.0.0.2..40 (28k ports per
# source/destination pair; TIME_WAIT lasts 60 s). Results: one JSON per
# measurement in OUT, medians of RUNS in OUT/summary.md (LOAD=0 rewrites the
# summary from the JSON already there).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

DURATION=${DURATION:-30}
RUNS=${RUNS:-3}
NS=${NS:-"5000 10000 14000"}
SERVERS=${SERVERS:-"spate nginx"}
THREADS=${THREADS:-2}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.40}
RAMP=${RAMP:-1000}
LOAD=${LOAD:-1}
FIND_MAX=${FIND_MAX:-0}
STEPS=${STEPS:-"1000,2000,3000,5000,7500,10000,15000"}
STEP_DURATION=${STEP_DURATION:-20}
OUT=${OUT:-$REPO/target/bench-hls}
NGINX=${NGINX:-/usr/sbin/nginx}
HTTP_PORT=${HTTP_PORT:-18480}
RTMP_PORT=${RTMP_PORT:-11945}
NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-18481}
NGINX_RTMP_PORT=${NGINX_RTMP_PORT:-11946}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ ! -x "$NGINX" ] || [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
    log "installing nginx + libnginx-mod-rtmp"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-rtmp >&2
fi
command -v ffmpeg >/dev/null || {
    log "installing ffmpeg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >&2
}

log "building release binaries"
timeout 1800 cargo build --release -p spate-bench -p spate-engine >&2
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/spate-bench-hls.XXXXXX)
chmod 755 "$WORK"
cp "$REPO/target/release/spate" "$REPO/target/release/spate-bench" "$WORK/"
SPATE=$WORK/spate
BENCH=$WORK/spate-bench
log "spate from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'), work dir $WORK"

SRC=$OUT/src.flv
if [ ! -s "$SRC" ]; then
    log "making $SRC (30 s, 640x360 30 fps x264 ultrafast 1 Mbit/s, GOP 60, AAC 128k)"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=1000:sample_rate=48000 \
        -t 30 -c:v libx264 -preset ultrafast -b:v 1M -maxrate 1M -bufsize 2M -g 60 \
        -c:a aac -b:a 128k -f flv "$SRC"
fi

mkdir -p "$WORK/www" "$WORK/nginx/logs" "$WORK/nginx/hls"
cat >"$WORK/spate.toml" <<EOF
[server]
bind = "127.0.0.1"
workers = 2

[http]
port = $HTTP_PORT
root = "$WORK/www"
file_send = "${SPATE_FILE_SEND:-send}"

[rtmp]
port = $RTMP_PORT

[api]
enabled = false   # not used here; 4242 may be taken

[[stream]]
name = "live"
EOF
P=$WORK/nginx
cat >"$P/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 2; worker_rlimit_nofile 19500; daemon off; pid $P/nginx.pid;
error_log $P/logs/error.log warn;
events { worker_connections 19000; }
rtmp { server { listen 127.0.0.1:$NGINX_RTMP_PORT; chunk_size 4096;
  application live { live on; record off; hls on; hls_path $P/hls; hls_fragment 2s; hls_playlist_length 10s; } } }
http { sendfile on; tcp_nopush on; tcp_nodelay on; access_log off;
  server { listen 127.0.0.1:$NGINX_HTTP_PORT;
    location /hls { types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; } alias $P/hls; } } }
EOF

SERVER_PID=
start_server() { # server → sets SERVER_PID and PID_ARGS
    case $1 in
    spate)
        "$SPATE" --config "$WORK/spate.toml" >>"$WORK/spate.log" 2>&1 &
        SERVER_PID=$!
        PID_ARGS="--server-pid $SERVER_PID"
        for _ in $(seq 100); do
            ss -ltn | grep -q "127.0.0.1:$RTMP_PORT " && break
            sleep 0.05
        done
        ;;
    nginx)
        rm -f "$P/nginx.pid"
        rm -rf "$P/hls"
        mkdir -p "$P/hls"
        chmod 777 "$P/hls" # the workers (user nobody) write the fragments
        "$NGINX" -p "$P" -c "$P/nginx.conf" >>"$P/logs/out.log" 2>&1 &
        SERVER_PID=$!
        PID_ARGS="--server-pids-from $SERVER_PID"
        for _ in $(seq 100); do
            ss -ltn | grep -q "127.0.0.1:$NGINX_RTMP_PORT " && break
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

urls() { # server → PLAYLIST_URL RTMP_URL
    case $1 in
    spate) echo "http://127.0.0.1:$HTTP_PORT/hls/live+bench/index.m3u8 rtmp://127.0.0.1:$RTMP_PORT/live/live+bench" ;;
    nginx) echo "http://127.0.0.1:$NGINX_HTTP_PORT/hls/bench.m3u8 rtmp://127.0.0.1:$NGINX_RTMP_PORT/live/bench" ;;
    esac
}

if [ "$LOAD" = 1 ]; then
    for run in $(seq 1 "$RUNS"); do
        for n in $NS; do
            for srv in $SERVERS; do
                read -r url rtmp < <(urls "$srv")
                start_server "$srv"
                log "run $run $srv: $n viewers, $DURATION s"
                # shellcheck disable=SC2086
                timeout $((DURATION + 240)) "$BENCH" hls "$url" --publish "$SRC" --rtmp-url "$rtmp" \
                    --viewers "$n" --duration "$DURATION" --ramp "$RAMP" --threads "$THREADS" \
                    --sources "$SOURCES" $PID_ARGS --label "$srv" \
                    --json "$OUT/hls-$srv-n$n-r$run.json" >"$OUT/hls-$srv-n$n-r$run.txt" 2>&1 ||
                    log "  (exit status $?)"
                grep -v '^spate-bench hls: .* up, .* playing$' "$OUT/hls-$srv-n$n-r$run.txt" | tail -n +2 >&2 || true
                stop_server
                sleep 1
            done
        done
    done
fi

if [ "$FIND_MAX" = 1 ]; then
    for srv in $SERVERS; do
        read -r url rtmp < <(urls "$srv")
        start_server "$srv"
        log "find-max: $srv, steps $STEPS, $STEP_DURATION s each"
        # shellcheck disable=SC2086
        timeout 1500 "$BENCH" hls "$url" --publish "$SRC" --rtmp-url "$rtmp" --find-max \
            --steps "$STEPS" --step-duration "$STEP_DURATION" --ramp "$RAMP" --threads "$THREADS" \
            --sources "$SOURCES" $PID_ARGS --label "$srv" --json "$OUT/findmax-$srv.json" \
            >"$OUT/findmax-$srv.txt" 2>&1 || log "  (exit status $?)"
        cat "$OUT/findmax-$srv.txt" >&2
        stop_server
        sleep 1
    done
fi

python3 - "$OUT" "$RUNS" "$NS" "$SERVERS" >"$OUT/summary.md" <<'PY'
import json, statistics, sys, os
out, runs, ns, servers = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def load(srv, n):
    rs = []
    for r in range(1, runs + 1):
        p = f"{out}/hls-{srv}-n{n}-r{r}.json"
        if os.path.exists(p):
            try:
                rs.append(json.load(open(p))["steps"][0])
            except (ValueError, KeyError, IndexError):
                pass
    return rs
def f(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"
rows = {}
print(f"Medians of up to {runs} runs (the column 'runs' says how many produced a result). "
      "Segment fetch latency = request sent → last byte, ms.")
print()
print("| server | viewers | runs | clean runs | active | stalls | viewers stalled | errors | seg p50 | seg p99 | seg p99.9 | playlist p99 | Mbit/s | server CPU s | server cores | viewers / core | server µs / request | bench CPU s | other CPU s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ns:
    for srv in servers:
        rs = load(srv, n)
        if not rs:
            continue
        m = lambda get: med([get(s) for s in rs])
        row = dict(
            runs=len(rs), clean=sum(1 for s in rs if s["clean"]),
            active=m(lambda s: s["active"]), stalls=m(lambda s: s["stalls"]),
            vstall=m(lambda s: s["viewers_stalled"]), errors=m(lambda s: s["errors"]["total"]),
            p50=m(lambda s: s["segment_ms"]["p50"]), p99=m(lambda s: s["segment_ms"]["p99"]),
            p999=m(lambda s: s["segment_ms"]["p999"]), pl99=m(lambda s: s["playlist_ms"]["p99"]),
            mbit=m(lambda s: s["mbit_s"]), cpu=m(lambda s: s["server_cpu_s"]),
            cores=m(lambda s: s["server_cores"]), vpc=m(lambda s: s["viewers_per_server_core"]),
            usreq=m(lambda s: s["server_cpu_us_per_request"]),
            bench=m(lambda s: s["client_cpu_s"]), other=m(lambda s: s["other_cpu_s"]))
        rows[(srv, n)] = row
        print(f"| {srv} | {n} | {row['runs']} | {row['clean']} | {f(row['active'],0)} | {f(row['stalls'],0)} | {f(row['vstall'],0)} | "
              f"{f(row['errors'],0)} | {f(row['p50'])} | {f(row['p99'])} | {f(row['p999'])} | {f(row['pl99'])} | {f(row['mbit'],0)} | "
              f"{f(row['cpu'])} | {f(row['cores'])} | {f(row['vpc'],0)} | {f(row['usreq'],0)} | {f(row['bench'])} | {f(row['other'])} |")
print()
if "spate" in servers and "nginx" in servers:
    print("Ratios at equal viewers (spate / nginx; < 1 is better for spate):")
    print()
    print("| viewers | server CPU | seg p50 | seg p99 | playlist p99 |")
    print("|---:|---:|---:|---:|---:|")
    for n in ns:
        a, b = rows.get(("spate", n)), rows.get(("nginx", n))
        if not a or not b:
            continue
        r = lambda k: (f"{a[k] / b[k]:.2f}" if a[k] is not None and b[k] else "-")
        print(f"| {n} | {r('cpu')} | {r('p50')} | {r('p99')} | {r('pl99')} |")
    print()
for srv in servers:
    every = [int(n) for n in ns if (srv, n) in rows and rows[(srv, n)]["clean"] == rows[(srv, n)]["runs"]]
    most = [int(n) for n in ns if (srv, n) in rows and 2 * rows[(srv, n)]["clean"] > rows[(srv, n)]["runs"]]
    print(f"- {srv}: largest N with every run clean (all viewers active, 0 stalls, 0 errors): "
          f"{max(every) if every else 'none'}; with most runs clean: {max(most) if most else 'none'}")
print()
print("Every run (noise shows in 'other CPU s': busy CPU of other processes on the machine during the measurement):")
print()
print("| server | viewers | run | clean | stalls | viewers stalled | seg p50 | seg p99 | playlist p99 | polls / viewer / s | margin p1 s | server CPU s | bench CPU s | other CPU s | machine busy |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ns:
    for srv in servers:
        for r in range(1, runs + 1):
            p = f"{out}/hls-{srv}-n{n}-r{r}.json"
            if not os.path.exists(p):
                continue
            try:
                s = json.load(open(p))["steps"][0]
            except (ValueError, KeyError, IndexError):
                continue
            polls = s["playlists"] / s["viewers"] / s["seconds"]
            p1 = s["margin_ms"]["p01"]
            print(f"| {srv} | {n} | {r} | {'yes' if s['clean'] else 'no'} | {s['stalls']} | {s['viewers_stalled']} | "
                  f"{f(s['segment_ms']['p50'])} | {f(s['segment_ms']['p99'])} | {f(s['playlist_ms']['p99'])} | {polls:.3f} | "
                  f"{f(p1 / 1000 if p1 is not None else None)} | {f(s['server_cpu_s'])} | {f(s['client_cpu_s'])} | {f(s['other_cpu_s'])} | {s['machine_busy'] * 100:.0f}% |")
PY
log "summary in $OUT/summary.md"
cat "$OUT/summary.md" >&2
