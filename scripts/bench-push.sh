#!/usr/bin/env bash
# Pacing quality and scale of spate's MPEG-TS-over-UDP push output:
# one 8 Mbps stream (RTMP in) pushed to N multicast outputs from ONE worker
# (one core), received by `spate-bench udp-rx` (kernel arrival timestamps):
# PCR jitter after drift removal, datagram gaps, continuity, and spate's CPU.
#
#   scripts/bench-push.sh [N ...]        default: 1 10 25 50
#
# Everything runs inside a private network namespace made here (multicast
# never touches the host's interfaces); needs root. Env: SPATE, SPATE_BENCH
# (binaries; default target/release/), DURATION (s, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
SPATE=${SPATE:-target/release/spate}
BENCH=${SPATE_BENCH:-target/release/spate-bench}
DURATION=${DURATION:-20}
COUNTS=("$@")
((${#COUNTS[@]})) || COUNTS=(1 10 25 50)
[[ $(id -u) -eq 0 ]] || { echo "bench-push.sh: needs root (network namespace)" >&2; exit 1; }
[[ -x $SPATE && -x $BENCH ]] || { echo "build first: cargo build --release -p spate-engine -p spate-bench" >&2; exit 1; }
WORK=$(mktemp -d /tmp/spate-bench-push.XXXXXX)
NS=spatepush$$
cleanup() {
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
  sleep 0.5
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link set lo multicast on
ip -n "$NS" route add 239.0.0.0/8 dev lo
MEDIA=target/bench-media/push-8M.flv
if [[ ! -f $MEDIA ]]; then
  mkdir -p target/bench-media
  ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=1000:sample_rate=48000 \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 60 -keyint_min 60 -sc_threshold 0 \
    -b:v 8M -maxrate 8M -bufsize 16M -c:a aac -b:a 128k -t 60 -y "$MEDIA"
fi
printf "%8s %12s %12s %14s %14s %10s %10s\n" outputs "Mbit/s tot" "CPU %/core" "jit p99 med" "jit p99 worst" "gap p99" "CC errors"
for n in "${COUNTS[@]}"; do
  cfg=$WORK/spate-$n.toml
  mkdir -p "$WORK/www"
  {
    printf '[server]\nbind = "127.0.0.1"\nworkers = 1\npin_workers = true\n[http]\nport = 18090\nroot = "%s/www"\n[rtmp]\nport = 11990\n[api]\nenabled = false\n[log]\nlevel = "warn"\n[[stream]]\nname = "live"\n' "$WORK"
    for ((i = 0; i < n; i++)); do
      printf '[[push]]\nstream = "live+p"\ntarget = "tsudp://239.1.1.1:%d?ttl=1&iface=lo"\n' $((5000 + i))
    done
  } >"$cfg"
  ip netns exec "$NS" taskset -c 0 "$SPATE" --config "$cfg" 2>"$WORK/spate-$n.log" &
  spid=$!
  sleep 1
  ip netns exec "$NS" taskset -c 1 ffmpeg -nostdin -v error -re -stream_loop -1 -i "$MEDIA" -c copy -f flv rtmp://127.0.0.1:11990/live/live+p 2>"$WORK/ff-$n.log" &
  fpid=$!
  sleep 3
  t0=$(awk '{print $14+$15}' /proc/$spid/stat)
  ip netns exec "$NS" taskset -c 1 "$BENCH" udp-rx --group 239.1.1.1 --ports "5000-$((5000 + n - 1))" \
    --duration "$DURATION" --warmup 2 --json "$WORK/rx-$n.json" >"$WORK/rx-$n.txt"
  t1=$(awk '{print $14+$15}' /proc/$spid/stat)
  kill $fpid $spid 2>/dev/null || true
  wait $fpid $spid 2>/dev/null || true
  hz=$(getconf CLK_TCK)
  cpu=$(python3 -c "print(f'{($t1-$t0)/$hz/($DURATION+2)*100:.1f}')")
  python3 - "$WORK/rx-$n.json" "$n" "$cpu" <<'PY'
import json, sys, statistics
rows = json.load(open(sys.argv[1])); n = sys.argv[2]; cpu = sys.argv[3]
tot = sum(r["mbps"] for r in rows)
j = sorted(r["pcr_jitter_us_p99"] for r in rows)
gap = max(r["gap_us_p99"] for r in rows)
cc = sum(r["cc_errors"] for r in rows)
print(f"{n:>8} {tot:>12.1f} {cpu:>12} {statistics.median(j)/1000:>12.2f}ms {j[-1]/1000:>12.2f}ms {gap/1000:>8.2f}ms {cc:>10}")
PY
done
echo "raw results: $WORK"
