#!/usr/bin/env bash
# HLS at 10,000 viewers: nginx vs spate file_send = send / sendfile, under
# the host's congestion control (bbr here) and under cubic, 2 rounds each
# (docs/benchmarks.md, "Follow-up 2"). Changes net.ipv4.tcp_congestion_control
# for the run (needs root) and restores the value it found.
# Results: target/bench-hls-cc/CC/SERVER/rN/*.json. ~15 min.
set -euo pipefail
cd "$(dirname "$0")/.."
export HTTP_PORT=${HTTP_PORT:-18580} RTMP_PORT=${RTMP_PORT:-12045}
export NGINX_HTTP_PORT=${NGINX_HTTP_PORT:-18581} NGINX_RTMP_PORT=${NGINX_RTMP_PORT:-12046}
NS=${NS:-10000}
ROUNDS=${ROUNDS:-2}
CCS=${CCS:-"bbr cubic"}
was=$(sysctl -n net.ipv4.tcp_congestion_control)
trap 'sysctl -qw net.ipv4.tcp_congestion_control="$was"' EXIT
for cc in $CCS; do
  sysctl -qw net.ipv4.tcp_congestion_control="$cc"
  for r in $(seq 1 "$ROUNDS"); do
    RUNS=1 DURATION=20 NS=$NS SERVERS="nginx" OUT=target/bench-hls-cc/$cc/nginx/r$r scripts/bench-hls.sh
    for m in send sendfile; do
      SPATE_FILE_SEND=$m RUNS=1 DURATION=20 NS=$NS SERVERS="spate" \
        OUT=target/bench-hls-cc/$cc/spate-$m/r$r scripts/bench-hls.sh
    done
  done
done
python3 - <<'PY'
import glob, json
for f in sorted(glob.glob('target/bench-hls-cc/*/*/r*/hls-*.json')):
    s = json.load(open(f))['steps'][-1]
    print(f, 'server_cpu_s', s.get('server_cpu_s'), 'stalls', s.get('stalls'), 'active', s.get('active'))
PY
