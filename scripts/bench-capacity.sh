#!/usr/bin/env bash
# Largest clean viewer counts of a 1 Mbit/s stream, Spate vs nginx-rtmp, with
# spate-bench scenarios (bench/scenarios/capacity-*.toml, --find-max), and
# optionally the 10-minute soak. Release builds; everything on loopback;
# each run stops by itself.
#
#   scripts/bench-capacity.sh                 # flv, rtmp, hls on spate; rtmp, hls on nginx-rtmp
#   CASES="spate-flv nginx-hls" scripts/bench-capacity.sh
#   CASES=spate-soak scripts/bench-capacity.sh   # the 10-minute soak on spate
#   CASES=nginx-soak scripts/bench-capacity.sh   # the same against nginx-rtmp (RTMP + HLS groups)
#   SPATE_WORKERS=1 OUT=target/bench-capacity-w1 CASES=spate-hls scripts/bench-capacity.sh
#   STEPS="10, 15, 20" CASES="spate-hls nginx-hls" scripts/bench-capacity.sh   # other find-max steps
#     (with STEPS, BENCH_THREADS sets the viewer threads, default 2; a thread holds ≤ 20,000)
#   SPATE_FILE_SEND=sendfile SPATE_CC=cubic CASES=spate-hls scripts/bench-capacity.sh
#     ([http] file_send, default send; [server] tcp_congestion, default the host's)
#   SPATE_COALESCE=40 CASES=spate-rtmp scripts/bench-capacity.sh
#     ([live] viewer_coalesce_ms, default 0)
#   NGINX_WORKERS=2 CASES=nginx-hls scripts/bench-capacity.sh
#     (nginx worker_processes, default 1: nginx-rtmp plays a live stream only to
#     players on the publisher's worker; HLS files are served by any worker, and
#     one worker holds at most ~19,000 connections under the 20,000-fd limit)
#
# Servers: spate ([server] workers = $SPATE_WORKERS, default 2, pin_workers = false: the load
# generator shares the 2 cores); Debian nginx 1.22 + libnginx-mod-rtmp with
# worker_processes 1 (nginx-rtmp plays a live stream only to players on the
# publisher's worker), HLS 2 s fragments served by nginx with sendfile.
# Reports: $OUT/<case>.json (+ .svg plots next to them), the table in
# $OUT/<case>.txt, the per-second progress in $OUT/<case>.progress.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench-capacity}
WORK=${WORK:-/tmp/spate-bench-capacity}
CASES=${CASES:-"spate-flv spate-rtmp nginx-rtmp spate-hls nginx-hls"}
HTTP_PORT=18180
RTMP_PORT=11935
NGINX_HTTP=18181
NGINX_RTMP=11936
cargo build --release -q -p spate-engine -p spate-bench
SPATE=target/release/spate
BENCH=target/release/spate-bench
NGINX=${NGINX:-/usr/sbin/nginx}
case " $CASES " in
*" nginx-"*)
    if [ ! -x "$NGINX" ] || [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
        echo "nginx-* cases need Debian's nginx and nginx-rtmp: apt-get install nginx libnginx-mod-rtmp (or set NGINX=)" >&2
        exit 2
    fi
    ;;
esac
mkdir -p "$OUT" "$WORK/www" "$WORK/nginx/logs" "$WORK/nginx/hls"
rm -f "$WORK/nginx/hls/"*
cat >"$WORK/spate.toml" <<TOML
[server]
bind = "127.0.0.1"
workers = ${SPATE_WORKERS:-2}
pin_workers = false

tcp_congestion = "${SPATE_CC:-}"

[http]
port = $HTTP_PORT
root = "$WORK/www"
file_send = "${SPATE_FILE_SEND:-send}"

[rtmp]
port = $RTMP_PORT

[live]
viewer_coalesce_ms = ${SPATE_COALESCE:-0}

[api]
enabled = false

[log]
level = "warn"

[[stream]]
name = "live"
TOML
cat >"$WORK/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes ${NGINX_WORKERS:-1}; worker_rlimit_nofile 19500; daemon off; pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 19000; }
rtmp { server { listen 127.0.0.1:$NGINX_RTMP; chunk_size 4096;
  application live { live on; record off; hls on; hls_path $WORK/nginx/hls;
    hls_fragment 2s; hls_playlist_length 12s; } } }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server { listen 127.0.0.1:$NGINX_HTTP;
    location /hls/ { alias $WORK/nginx/hls/; add_header Cache-Control no-cache; } } }
CONF

PID=
stop() {
    [ -n "$PID" ] || return 0
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}
trap stop EXIT
wait_port() { for _ in $(seq 200); do ss -ltn | grep -q "127.0.0.1:$1 " && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

for c in $CASES; do
    case $c in
    spate-*)
        "$SPATE" --config "$WORK/spate.toml" >>"$WORK/spate.log" 2>&1 &
        PID=$!
        wait_port $RTMP_PORT
        target=(--target "http://127.0.0.1:$HTTP_PORT" --rtmp "rtmp://127.0.0.1:$RTMP_PORT")
        ;;
    nginx-*)
        rm -f "$WORK/nginx/nginx.pid" "$WORK/nginx/hls/"*
        "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >>"$WORK/nginx/logs/out.log" 2>&1 &
        PID=$!
        wait_port $NGINX_RTMP
        target=(--target "http://127.0.0.1:$NGINX_HTTP" --rtmp "rtmp://127.0.0.1:$NGINX_RTMP")
        ;;
    esac
    case $c in
    spate-flv) args=(bench/scenarios/capacity-flv.toml --find-max) ;;
    spate-rtmp) args=(bench/scenarios/capacity-rtmp.toml --find-max) ;;
    spate-hls) args=(bench/scenarios/capacity-hls.toml --find-max) ;;
    nginx-rtmp) args=(bench/scenarios/capacity-rtmp-nginx.toml --find-max) ;;
    nginx-hls) args=(bench/scenarios/capacity-hls-nginx.toml --find-max) ;;
    spate-soak) args=(bench/scenarios/soak.toml) ;;
    nginx-soak) args=(bench/scenarios/soak-nginx.toml) ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
    esac
    if [ -n "${STEPS:-}" ] && [ "${c#*-}" != soak ]; then
        # e.g. STEPS="10, 15, 20": the scenario with these find-max steps.
        sed "s/^steps = .*/steps = [$STEPS]/; s/^threads = .*/threads = ${BENCH_THREADS:-2}/" \
            "${args[0]}" >"$WORK/$(basename "${args[0]}")"
        args[0]=$WORK/$(basename "${args[0]}")
    fi
    echo "==> $c"
    "$BENCH" run "${args[@]}" "${target[@]}" --server-pid "$PID" --json "$OUT/$c.json" \
        2>"$OUT/$c.progress" | tee "$OUT/$c.txt" || echo "($c: spate-bench exited $?)"
    stop
    sleep 2
done
