#!/usr/bin/env bash
# The loopback floor: what the kernel alone costs this machine to deliver the
# benchmarks' traffic, with no server in between (`spate-bench floor`: N
# loopback TCP pairs, a sender thread writing one message to each in turn, a
# receiver thread reading them). Any server plus any load generator on this
# box pays at least this for the same deliveries.
#
#   scripts/bench-floor.sh                 # ~4 min
#   RUNS=1 DURATION=3 scripts/bench-floor.sh
#
# Cases (name: connections, message bytes, rate, mode):
#   live-*   1,950 B messages: one FLV tag of a 1.2 Mbit/s stream (30 video +
#            47 audio tags a second), unpaced (the most deliveries per second
#            the box can do) and paced at 77 a second (the stream's own rate)
#   seg-*    325,000 B messages: one 2 s HLS segment of that stream, by
#            write(2) and by sendfile(2), one per connection every 2 s,
#            spread evenly (HLS viewers' fetches spread over a target
#            duration; sent in one burst, 9,000 × 325 KB overflows tcp_mem
#            and the kernel stalls the senders for seconds)
#   file-*   262,144 B messages: the static-file benchmark's 256 KiB file
#            (scripts/bench-http.sh), 20 a second per connection at 1,000
#            connections, spread: about the request rate nginx served there
# Results: one JSON per run in OUT, medians in OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-6}
OUT=${OUT:-target/bench-floor}
CASES=${CASES:-"live-1000 live-5000 live-9000 live-paced-1000 live-paced-4000 live-paced-9000 seg-write-9000 seg-sendfile-9000 file-write-1000 file-sendfile-1000"}

cargo build --release -q -p spate-bench
BENCH=target/release/spate-bench
mkdir -p "$OUT"
rm -f "$OUT"/*.json

args_of() {
    case $1 in
        live-paced-*) echo "--conns ${1#live-paced-} --msg 1950 --rate 77" ;;
        live-*) echo "--conns ${1#live-} --msg 1950" ;;
        seg-write-*) echo "--conns ${1#seg-write-} --msg 325000 --rate 0.5 --spread" ;;
        seg-sendfile-*) echo "--conns ${1#seg-sendfile-} --msg 325000 --rate 0.5 --spread --sendfile" ;;
        file-write-*) echo "--conns ${1#file-write-} --msg 262144 --rate 20 --spread" ;;
        file-sendfile-*) echo "--conns ${1#file-sendfile-} --msg 262144 --rate 20 --spread --sendfile" ;;
        *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

for run in $(seq "$RUNS"); do
    for c in $CASES; do
        # shellcheck disable=SC2046
        $BENCH floor $(args_of "$c") --duration "$DURATION" --json "$OUT/$c-$run.json" \
            | sed "s/^/[$c #$run] /"
        sleep 1 # let TIME_WAIT sockets and timers settle between cases
    done
done

python3 - "$OUT" $CASES <<'PY'
import json, statistics, sys, glob, os
out, cases = sys.argv[1], sys.argv[2:]
rows = []
hdr = ("| case | conns | bytes | mode | rate/s | deliveries/s | Gbit/s | machine busy % | machine µs per delivery "
       "| sender µs | receiver µs | round p50 ms | round p99 ms | latency p50 ms | latency p99 ms | rounds behind | other CPU-s |")
rows.append(hdr)
rows.append("|" + "---|" * (hdr.count("|") - 1))
for c in cases:
    rs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, f"{c}-*.json")))]
    if not rs:
        continue
    m = lambda f: statistics.median(f(r) for r in rs)
    busy = m(lambda r: 100 * r["machine_busy_s"] / (r["wall_s"] * r["machine_cpus"]))
    rows.append(
        f"| {c} | {rs[0]['conns']:,} | {rs[0]['msg']:,} | {rs[0]['mode']} | "
        f"{rs[0]['rate_target'] or 'unpaced'} | {m(lambda r: r['deliveries_per_s']):,.0f} | "
        f"{m(lambda r: r['gbit_per_s']):.2f} | {busy:.0f} | {m(lambda r: r['busy_us_per_delivery']):.2f} | "
        f"{m(lambda r: r['sender_us_per_delivery']):.2f} | {m(lambda r: r['receiver_us_per_delivery']):.2f} | "
        f"{m(lambda r: r['round_ms']['p50']):.2f} | {m(lambda r: r['round_ms']['p99']):.2f} | "
        f"{m(lambda r: r['latency_ms']['p50']):.2f} | {m(lambda r: r['latency_ms']['p99']):.2f} | "
        f"{m(lambda r: r['rounds_behind']):.0f} | {m(lambda r: r['other_cpu_s']):.2f} |")
text = f"medians of {len(rs)} runs\n\n" + "\n".join(rows) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
PY
