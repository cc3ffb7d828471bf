#!/bin/bash
# HLS server CPU at 10,000 and 20,000 viewers: nginx (2 workers) and Spate send / sendfile / sendfile+cubic, 2 runs (docs/benchmarks.md).
cd "$(dirname "$0")/.."
for run in 1 2; do
env STEPS="10, 20" NGINX_WORKERS=2 CASES=nginx-hls OUT=target/bench-hls-cells/r$run/nginx scripts/bench-capacity.sh 2>&1 | grep -E "step|hls#0|server:" | sed "s/^/r$run nginx: /"
env STEPS="10, 20" SPATE_FILE_SEND=send CASES=spate-hls OUT=target/bench-hls-cells/r$run/send scripts/bench-capacity.sh 2>&1 | grep -E "step|hls#0|server:" | sed "s/^/r$run spate-send: /"
env STEPS="10, 20" SPATE_FILE_SEND=sendfile CASES=spate-hls OUT=target/bench-hls-cells/r$run/sendfile scripts/bench-capacity.sh 2>&1 | grep -E "step|hls#0|server:" | sed "s/^/r$run spate-sendfile: /"
env STEPS="10, 20" SPATE_FILE_SEND=sendfile SPATE_CC=cubic CASES=spate-hls OUT=target/bench-hls-cells/r$run/sendfile-cubic scripts/bench-capacity.sh 2>&1 | grep -E "step|hls#0|server:" | sed "s/^/r$run spate-sendfile-cubic: /"
done
echo ALL DONE
