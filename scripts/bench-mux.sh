#!/usr/bin/env bash
# Packaging throughput per core: Spate's MPEG-TS muxer and fMP4 fragmenter
# (criterion, bench/benches/mux.rs) against `ffmpeg -c copy` remuxing the same
# recording, both pinned to one CPU.
#
#   scripts/bench-mux.sh            # one run (~2 min on 2 cores); run it 3 times
#   CLEAN=1 scripts/bench-mux.sh    # forget earlier runs in OUT first
#
# 1. Records the inputs with ffmpeg into MEDIA (default target/bench-media) if
#    missing: 20 s of testsrc2 720p30 + a 1 kHz sine, libx264 veryfast,
#    yuv420p, 2 s GOP (-g 60 -keyint_min 60 -sc_threshold 0), 1M.flv at
#    -b:v 1M -maxrate 1M -bufsize 2M and 8M.flv at 8M/8M/16M, AAC 128k, FLV.
# 2. Builds the criterion bench (`cargo bench -p spate-bench --bench mux
#    --no-run`), copies the executable aside and runs it under
#    `taskset -c $CPU`, twice: timing the bench thread's CPU time
#    (SPATE_BENCH_CLOCK=cpu) and wall time. It demuxes each FLV once
#    (outside the timed loops) and times TS muxing, fMP4 fragmenting
#    (payloads by reference, and copied into one buffer) and, for
#    reference, the FLV demux. It prints payload_bytes: the sum of the
#    frames' payloads (FLV tag bodies minus the 5-byte AVC / 2-byte AAC
#    packet headers; no sequence headers, no script tags).
# 3. Times the peer with hyperfine (installed with apt if missing), 1 warm-up
#    + FFMPEG_RUNS (5) runs, under `taskset -c $CPU`:
#      ffmpeg -nostdin -v error -i X.flv -c copy -f mpegts -y /dev/null
#      ffmpeg -nostdin -v error -i X.flv -c copy -f mp4 \
#          -movflags +frag_keyframe+empty_moov+default_base_moof -y /dev/null
#    ffmpeg's rate = payload_bytes / median wall time, or / mean CPU time
#    (hyperfine's user + system, which includes ffmpeg's threads; pinned,
#    they share the one CPU). On these 20 s inputs
#    that time is mostly ffmpeg's start-up, so each command is also timed
#    with `-stream_loop $((LOOPS - 1))` before `-i` (the file LOOPS times in
#    one process), and ffmpeg's steady rate is
#    (LOOPS - 1) * payload_bytes / (median time looped - median time once):
#    start-up and the one-off probing cancel, demux + mux + write stay.
# 4. Prints two tables, per CPU-second and per wall-second: format, spate
#    GB/s (payload bytes / criterion's median time per iteration) and ns per
#    frame, ffmpeg GB/s once and steady, and the ratios; saves them as
#    OUT/runs/STAMP.tsv and prints the medians over every run kept in
#    OUT/runs (the ratios there are ratios of medians).
#
# Noise: the bench and ffmpeg are pinned, but other processes may still run on
# that CPU. For each phase the script reports the CPU's busy time
# (/proc/stat) not used by the measured processes (GNU time's user + system),
# as a share of the phase's wall time. CPU time leaves that out (not its
# effect on caches); wall time does not.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

CPU=${CPU:-1}
FFMPEG_RUNS=${FFMPEG_RUNS:-5}
# Passes over the file in the looped ffmpeg runs.
LOOPS=${LOOPS:-20}
MEDIA=${MEDIA:-$REPO/target/bench-media}
OUT=${OUT:-$REPO/target/bench-mux}
CLEAN=${CLEAN:-0}
# Where ffmpeg writes (a tmpfs file such as /dev/shm/spate-mux.out adds the
# cost of keeping the output in memory).
PEER_OUT=${PEER_OUT:-/dev/null}
STREAMS="1M 8M"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (apt-get install -y ffmpeg)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the tables" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is needed (util-linux)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is needed (apt-get install -y time)" >&2; exit 1; }
if ! command -v hyperfine >/dev/null; then
    log "installing hyperfine"
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y hyperfine >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y hyperfine >&2; }
fi

# --- 1. inputs ---------------------------------------------------------------
mkdir -p "$MEDIA"
for s in $STREAMS; do
    f=$MEDIA/$s.flv
    [ -s "$f" ] && continue
    rate=${s%M}
    log "recording $f"
    ffmpeg -nostdin -v error -y \
        -f lavfi -i testsrc2=size=1280x720:rate=30 \
        -f lavfi -i sine=frequency=1000:sample_rate=48000 \
        -t 20 -pix_fmt yuv420p \
        -c:v libx264 -preset veryfast -g 60 -keyint_min 60 -sc_threshold 0 \
        -b:v "${rate}M" -maxrate "${rate}M" -bufsize "$((2 * rate))M" \
        -c:a aac -b:a 128k -f flv "$f.tmp"
    mv "$f.tmp" "$f"
done

# --- 2. spate (criterion) ----------------------------------------------------
log "building the mux bench"
EXE=$(cargo bench -p spate-bench --bench mux --no-run --message-format=json-render-diagnostics \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "mux" and m.get("executable"):
        print(m["executable"])')
[ -n "$EXE" ] || { echo "no bench executable found" >&2; exit 1; }
STAMP=$(date +%Y%m%d-%H%M%S)
RUN=$OUT/$STAMP
mkdir -p "$RUN" "$OUT/runs"
[ "$CLEAN" = 0 ] || rm -f "$OUT"/runs/*.tsv
# A private copy: other builds in this tree must not swap it mid-run.
cp "$EXE" "$RUN/mux-bench"
log "bench from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'), results in $RUN"

# Busy jiffies of CPU $CPU (user nice system irq softirq steal).
cpu_busy() { awk -v c="cpu$CPU" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
HZ=$(getconf CLK_TCK)
# other_share BUSY_BEFORE BUSY_AFTER TIMEFILE: CPU time on $CPU not used by the
# timed command, as a share of its wall time.
other_share() {
    local wall user sys
    read -r wall user sys <"$3"
    python3 -c "w, u, s, d = $wall, $user, $sys, ($2 - $1) / $HZ
print(f'{max(0.0, d - u - s) / w:.2f}')"
}

: >"$RUN/other.txt"
for clock in cpu wall; do
    log "criterion on CPU $CPU, $clock time"
    b0=$(cpu_busy)
    SPATE_BENCH_CLOCK=$clock CRITERION_HOME=$RUN/criterion-$clock \
        SPATE_BENCH_FLV_1M=$MEDIA/1M.flv SPATE_BENCH_FLV_8M=$MEDIA/8M.flv \
        /usr/bin/time -f '%e %U %S' -o "$RUN/bench-$clock.time" \
        taskset -c "$CPU" "$RUN/mux-bench" --bench --noplot >"$RUN/bench-$clock.log" 2>&1 \
        || { cat "$RUN/bench-$clock.log" >&2; exit 1; }
    b1=$(cpu_busy)
    echo "bench-$clock $(other_share "$b0" "$b1" "$RUN/bench-$clock.time")" >>"$RUN/other.txt"
done
echo "loops $LOOPS" >"$RUN/loops.txt"
grep '^mux input' "$RUN/bench-cpu.log" >&2

# --- 3. ffmpeg -c copy -------------------------------------------------------
peer() { # NAME-STREAM LOOPS FORMAT-ARGS...
    local name=$1 loops=$2 stream=${1#*-}
    shift 2
    local b0 b1 loop=""
    [ "$loops" = 1 ] || loop="-stream_loop $((loops - 1)) "
    b0=$(cpu_busy)
    /usr/bin/time -f '%e %U %S' -o "$RUN/$name-x$loops.time" \
        taskset -c "$CPU" hyperfine -N --style basic --warmup 1 --runs "$FFMPEG_RUNS" \
        --export-json "$RUN/$name-x$loops.json" \
        "ffmpeg -nostdin -v error ${loop}-i $MEDIA/$stream.flv -c copy $* -y $PEER_OUT" >&2
    b1=$(cpu_busy)
    echo "$name-x$loops $(other_share "$b0" "$b1" "$RUN/$name-x$loops.time")" >>"$RUN/other.txt"
}
for s in $STREAMS; do
    for n in 1 "$LOOPS"; do
        log "ffmpeg -> mpegts, $s, file x$n"
        peer "ts-$s" "$n" -f mpegts
        log "ffmpeg -> fragmented mp4, $s, file x$n"
        peer "mp4-$s" "$n" -f mp4 -movflags +frag_keyframe+empty_moov+default_base_moof
    done
done
[ "$PEER_OUT" = /dev/null ] || rm -f "$PEER_OUT"

# --- 4. tables ---------------------------------------------------------------
python3 - "$RUN" "$OUT/runs/$STAMP.tsv" "$OUT/runs" <<'PY'
import glob, json, os, re, statistics, sys

run, tsv, runs_dir = sys.argv[1:4]
log = open(os.path.join(run, "bench-cpu.log")).read()
inputs = {}
for m in re.finditer(r"^mux input (\S+): (.*)$", log, re.M):
    inputs[m[1]] = {k: int(v) for k, v in (kv.split("=") for kv in m[2].split())}
other = dict(line.split() for line in open(os.path.join(run, "other.txt")))
loops = int(open(os.path.join(run, "loops.txt")).read().split()[1])
nan = float("nan")
CLOCKS = ("cpu", "wall")


def spate_ns(clock, bench, s):
    p = os.path.join(run, f"criterion-{clock}", "mux", bench, s, "new", "estimates.json")
    return json.load(open(p))["median"]["point_estimate"]


def peer_s(clock, name, n):
    r = json.load(open(os.path.join(run, f"{name}-x{n}.json")))["results"][0]
    return r["user"] + r["system"] if clock == "cpu" else r["median"]


# (clock, format, stream, spate GB/s, spate ns/frame, ffmpeg GB/s once, ffmpeg GB/s steady)
rows = []
for clock in CLOCKS:
    for s, inp in inputs.items():
        b, frames = inp["payload_bytes"], inp["frames"]
        peer = {}
        for f in ("ts", "mp4"):
            once, looped = peer_s(clock, f"{f}-{s}", 1), peer_s(clock, f"{f}-{s}", loops)
            peer[f] = (b / once / 1e9, (loops - 1) * b / (looped - once) / 1e9)
        ns = lambda bench: spate_ns(clock, bench, s)
        demux = ns("flv_demux")
        for name, t, f in (
            ("TS", ns("ts"), "ts"),
            ("fMP4, payloads by reference", ns("fmp4"), "mp4"),
            ("fMP4, copied into one buffer", ns("fmp4_copy"), "mp4"),
            ("FLV demux + TS", demux + ns("ts"), "ts"),
            ("FLV demux + fMP4 by reference", demux + ns("fmp4"), "mp4"),
            ("FLV demux + fMP4 copied", demux + ns("fmp4_copy"), "mp4"),
            ("FLV demux alone", demux, None),
        ):
            once, steady = peer[f] if f else (nan, nan)
            rows.append((clock, name, s, b / t, t / frames, once, steady))

with open(tsv, "w") as out:
    for r in rows:
        out.write("\t".join(list(r[:3]) + [repr(x) for x in r[3:]]) + "\n")


def fmt(x, spec):
    return "–" if x != x else format(x, spec)


def table(rows, title):
    for clock in CLOCKS:
        per = "CPU-second" if clock == "cpu" else "wall-second"
        print(f"\n{title}, per {per}\n")
        print("| format | stream | spate GB/s | spate ns/frame | ffmpeg GB/s, once "
              "| ×ffmpeg once | ffmpeg GB/s, steady | ×ffmpeg steady |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for c, name, s, sp, nsf, once, steady in rows:
            if c == clock:
                print(f"| {name} | {s} | {fmt(sp, '.2f')} | {fmt(nsf, '.0f')} "
                      f"| {fmt(once, '.3f')} | {fmt(sp / once, '.0f')} "
                      f"| {fmt(steady, '.3f')} | {fmt(sp / steady, '.1f')} |")


for s, inp in inputs.items():
    print(f"{s}: " + ", ".join(f"{k}={v}" for k, v in inp.items()))
print("CPU time used by others on the CPU, as a share of wall time: "
      + ", ".join(f"{k} {v}" for k, v in other.items()))
table(rows, f"This run ({os.path.basename(run)}; ffmpeg steady = file x{loops} minus x1)")

files = sorted(glob.glob(os.path.join(runs_dir, "*.tsv")))
by = {}
for p in files:
    for line in open(p):
        clock, name, s, *vals = line.rstrip("\n").split("\t")
        by.setdefault((clock, name, s), []).append([float(v) for v in vals])
med = [(*k, *(statistics.median(v[i] for v in vs) for i in range(4))) for k, vs in by.items()]
table(med, f"Medians over {len(files)} run(s) in {runs_dir}")
PY
