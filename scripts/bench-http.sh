#!/usr/bin/env bash
# Spate vs nginx serving static files, measured with spate-bench.
#
#   scripts/bench-http.sh                 # everything (~25 min on 2 cores)
#   RUNS=1 DURATION=5 CONNS="100" IDLE_CONNS="5000" SERVERS="nginx spate-send" scripts/bench-http.sh
#
# For each run (RUNS, default 3) and each server (one at a time, started
# fresh, same files): spate-bench loads a 256 KiB file (seg.ts) and a 1 KiB
# file (index.m3u8) at each connection count in CONNS for DURATION seconds
# (after a warm-up). Then, once per server, idle connections (IDLE_CONNS) are
# held for IDLE_HOLD seconds on a fresh server while its PSS is read, with no
# request sent and with one request sent first. Results: one JSON per
# measurement in OUT, medians in OUT/summary.md (written by
# scripts/bench-http-summary.py).
#
# Servers: nginx (Debian's /usr/sbin/nginx, 2 workers, sendfile) and spate
# (2 workers) with each http.file_send mode: spate-send, spate-send_zc,
# spate-splice. Both servers pin their workers to cores (nginx
# `worker_cpu_affinity auto`, spate `pin_workers = true`, its default); the
# client is not pinned unless BENCH_PIN="0" (a comma list of CPUs) is given.
# The machine is shared by client and server, so the headline metric is
# requests per server-CPU-second; raw requests/s is reported too.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-3}
CONNS=${CONNS:-"100 1000 10000"}
FILES=${FILES:-"seg.ts index.m3u8"}
IDLE_CONNS=${IDLE_CONNS:-"5000 20000"}
IDLE_HOLD=${IDLE_HOLD:-10}
SERVERS=${SERVERS:-"nginx spate-send spate-send_zc spate-splice"}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.40}
THREADS=${THREADS:-2}
BENCH_PIN=${BENCH_PIN:-}
# A load measurement during which other processes (not server, client or
# interrupts) used more than this many CPU seconds is repeated, up to
# ATTEMPTS times; the quietest attempt is kept.
OTHER_MAX=${OTHER_MAX:-0.5}
ATTEMPTS=${ATTEMPTS:-3}
OUT=${OUT:-$REPO/target/bench-http}
NGINX=${NGINX:-/usr/sbin/nginx}
# Which parts run: runs RUN_FIRST..RUNS of the load tests (LOAD=1), the idle
# tests (IDLE=1); CLEAN=0 keeps earlier results in OUT (to fill in a part).
RUN_FIRST=${RUN_FIRST:-1}
LOAD=${LOAD:-1}
IDLE=${IDLE:-1}
CLEAN=${CLEAN:-1}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ -x "$NGINX" ] || { echo "nginx not found at $NGINX (apt-get install -y nginx)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }

log "building release binaries"
timeout 1200 cargo build --release -p spate-engine -p spate-bench >&2

mkdir -p "$OUT"
[ "$CLEAN" = 0 ] || rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.noisy "$OUT"/*.log
WORK=$(mktemp -d /tmp/spate-bench-http.XXXXXX)
chmod 755 "$WORK"
# Private copies: other builds in this tree must not swap binaries mid-run.
cp "$REPO/target/release/spate" "$REPO/target/release/spate-bench" "$WORK/"
SPATE=$WORK/spate
BENCH=$WORK/spate-bench
log "spate from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
ROOT=$WORK/root
mkdir -p "$ROOT" "$WORK/nginx/logs" "$WORK/nginx/tmp"
head -c $((256 * 1024)) /dev/urandom >"$ROOT/seg.ts"
# A playlist-looking 1 KiB file (built whole, then cut: no SIGPIPE under pipefail).
{
    printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n'
    for i in $(seq 100 200); do printf '#EXTINF:2.000,\nseg_%05d.ts\n' "$i"; done
} >"$WORK/playlist.tmp"
head -c 1024 "$WORK/playlist.tmp" >"$ROOT/index.m3u8"
chmod -R a+rX "$ROOT"

SERVER_PID=
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
worker_cpu_affinity auto;
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 20000; use epoll; }
http {
    sendfile on; tcp_nopush on; tcp_nodelay on; access_log off;
    keepalive_requests 1000000; keepalive_timeout 300;
    open_file_cache max=1000 inactive=20s;
    client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
    types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; }
    server { listen 127.0.0.1:@PORT@ reuseport; root $ROOT; }
}
EOF

spate_conf() {
    cat >"$WORK/spate-$1.toml" <<EOF
[server]
workers = 2
bind = "127.0.0.1"
shutdown_timeout = 2

[http]
port = $2
root = "$ROOT"
idle_timeout = 300
file_send = "$1"
EOF
    # Only HTTP is measured: keep other listeners (RTMP, when the build has
    # it) off, so they cannot collide with other programs' ports.
    if grep -q 'pub rtmp:' "$REPO/engine/src/config.rs" 2>/dev/null; then
        printf '\n[rtmp]\nenabled = false\n[api]\nenabled = false\n' >>"$WORK/spate-$1.toml"
    fi
    echo "$WORK/spate-$1.toml"
}

# A port nothing listens on now (other programs on this machine pick ports too).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 8000))
        ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}

# Start a server on a fresh port; sets SERVER_PID, URL_BASE and PID_ARGS (how
# spate-bench finds the server's processes). Returns 1 if it does not come up.
start_server_once() {
    local name=$1 port
    port=$(free_port)
    case $name in
    nginx)
        sed "s/@PORT@/$port/" "$WORK/nginx/nginx.conf" >"$WORK/nginx/nginx-run.conf"
        "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx-run.conf" >>"$OUT/nginx.log" 2>&1 &
        SERVER_PID=$!
        PID_ARGS=(--server-pids-from "$SERVER_PID")
        ;;
    spate-*)
        "$SPATE" --config "$(spate_conf "${name#spate-}" "$port")" >>"$OUT/$name.log" 2>&1 &
        SERVER_PID=$!
        PID_ARGS=(--server-pid "$SERVER_PID")
        ;;
    *) echo "unknown server $name" >&2; exit 1 ;;
    esac
    URL_BASE=http://127.0.0.1:$port
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        if curl -sf -o /dev/null "$URL_BASE/index.m3u8"; then
            # nginx forks its workers after the listener is up: wait for them.
            [ "$name" != nginx ] || [ "$(wc -w </proc/"$SERVER_PID"/task/"$SERVER_PID"/children)" -ge 2 ] && return 0
        fi
        sleep 0.1
    done
    log "$name did not come up on port $port; log:"
    tail -5 "$OUT/$name.log" >&2
    stop_server
    return 1
}

start_server() {
    local try
    for try in 1 2 3; do
        start_server_once "$1" && return 0
        sleep 2
    done
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "server $SERVER_PID ignored SIGTERM for 15 s: SIGKILL"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

check_alive() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "SERVER $1 DIED during $2; last log lines:"
        tail -20 "$OUT/$1.log" >&2
        SERVER_PID=
        return 1
    fi
}

other_cpu() { sed -n 's/.*"other_cpu_s": \([0-9.]*\).*/\1/p' "$1"; }

bench() {
    local tag=$1
    shift
    local pin=()
    [ -z "$BENCH_PIN" ] || pin=(--pin-cpus "$BENCH_PIN")
    local attempt best=
    for attempt in $(seq "$ATTEMPTS"); do
        timeout $((DURATION + IDLE_HOLD + WARMUP + 150)) "$BENCH" http "$@" \
            --threads "$THREADS" --sources "$SOURCES" "${PID_ARGS[@]}" "${pin[@]}" \
            --json "$OUT/$tag.try$attempt.json" >"$OUT/$tag.try$attempt.txt" 2>&1 ||
            log "spate-bench exited $? for $tag (see $OUT/$tag.try$attempt.txt)"
        [ -f "$OUT/$tag.try$attempt.json" ] || continue
        local o
        o=$(other_cpu "$OUT/$tag.try$attempt.json")
        if [ -z "$best" ] || awk -v a="${o:-0}" -v b="$(other_cpu "$OUT/$tag.try$best.json")" 'BEGIN { exit !(a < b) }'; then
            best=$attempt
        fi
        # Idle runs have no CPU figure; quiet load runs are kept at once.
        awk -v a="${o:-0}" -v m="$OTHER_MAX" 'BEGIN { exit !(a <= m) }' && break
        log "$tag: other processes used ${o} CPU s during the measurement; repeating"
        sleep 5
    done
    if [ -n "$best" ]; then
        mv "$OUT/$tag.try$best.json" "$OUT/$tag.json"
        mv "$OUT/$tag.try$best.txt" "$OUT/$tag.txt"
        for f in "$OUT/$tag".try*.json; do [ -e "$f" ] && mv "$f" "${f%.json}.noisy"; done
        grep -E 'req/s|per idle conn|errors|other' "$OUT/$tag.txt" | sed "s/^/    $tag: /" >&2 || true
    fi
    # Let the client's ring teardown reach the server before anything else.
    sleep 1
}

if [ "$LOAD" = 1 ]; then
    for run in $(seq "$RUN_FIRST" "$RUNS"); do
        for server in $SERVERS; do
            log "run $run/$RUNS: $server"
            start_server "$server" || { log "SKIPPED: $server run $run (did not start)"; continue; }
            for file in $FILES; do
                for c in $CONNS; do
                    bench "load-$server-$file-c$c-r$run" "$URL_BASE/$file" \
                        --connections "$c" --duration "$DURATION" --warmup "$WARMUP" --label "$server"
                    check_alive "$server" "load $file c=$c run $run" || start_server "$server" || break 2
                done
            done
            stop_server
        done
    done
fi

if [ "$IDLE" = 1 ]; then
    for server in $SERVERS; do
        for n in $IDLE_CONNS; do
            for kind in bare req; do
                extra=()
                [ "$kind" = bare ] || extra=(--idle-request)
                log "idle: $server, $n connections, $kind"
                start_server "$server" || { log "SKIPPED: idle $server $n $kind (did not start)"; continue; }
                sleep 1
                bench "idle-$server-$kind-c$n" "$URL_BASE/index.m3u8" --idle "${extra[@]}" \
                    --connections "$n" --duration "$IDLE_HOLD" --label "$server"
                check_alive "$server" "idle $kind c=$n" || true
                stop_server
            done
        done
    done
fi

python3 "$REPO/scripts/bench-http-summary.py" "$OUT" | tee "$OUT/summary.md"
log "results in $OUT (summary.md, one JSON per measurement)"
