#!/usr/bin/env bash
# The analyze benchmark: a capture of N connections, each SYN seen before and after NAT
# (2N frames), read by `kubectl-realip analyze` and by tshark with the equivalent display filter,
# in the same run on the same file. Prints wall time and peak memory of each (best of RUNS).
#
# Usage: bench/analyze/run.sh [CONNECTIONS] [RUNS]      (needs tshark: apt-get install tshark)
set -euo pipefail
n=${1:-200000}
runs=${2:-3}
source "$(dirname "$0")/build.sh"
gen "$work/bench.pcapng" "$n"

analyze=("$plugin" analyze -o json "$work/bench.pcapng")
tshark=(tshark -r "$work/bench.pcapng" -Y 'tcp.flags.syn==1 && tcp.flags.ack==0' -T fields
    -e frame.interface_name -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport
    -e tcp.seq_raw -e tcp.options.timestamp.tsval -e ip.ttl -e ip.id)

# Both must have read every frame.
connections=$("${analyze[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["connections"])')
frames=$("${tshark[@]}" | wc -l)
echo "analyze: $connections connections; tshark: $frames SYN frames"

best() { # NAME COMMAND...: best wall time over $runs runs, with that run's peak RSS
    local name=$1 s kb best_s="" best_kb=""
    shift
    for _ in $(seq "$runs"); do
        /usr/bin/time -o "$work/time" -f '%e %M' "$@" > /dev/null 2>&1
        read -r s kb < "$work/time"
        if [[ -z $best_s ]] || awk "BEGIN{exit !($s < $best_s)}"; then best_s=$s best_kb=$kb; fi
    done
    printf '%-8s %6.2f s  %8d KB peak RSS\n' "$name" "$best_s" "$best_kb"
    echo "$best_s" > "$work/$name.s"
}
best analyze "${analyze[@]}"
best tshark "${tshark[@]}"
awk -v a="$(cat "$work/analyze.s")" -v t="$(cat "$work/tshark.s")" \
    'BEGIN { if (a > 0) printf "analyze is %.1fx faster than tshark\n", t / a }'
