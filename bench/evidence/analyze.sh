#!/usr/bin/env bash
# The plugin side of --evidence: `kubectl-realip analyze -o json` on a probe JSONL capture of
# CONNECTIONS connections across two nodes (bench/evidence/capture.py: each DNATed by one of 500
# endpoint chains and masqueraded, with its conntrack entries, the routes and both nodes' NAT
# rules at the start and the end), against the same capture without its evidence lines. Best
# wall time of RUNS, with that run's peak RSS.
#
# usage: bench/evidence/analyze.sh [CONNECTIONS] [RUNS]   (python3, GNU time; no root)
set -euo pipefail
connections=${1:-50000}
runs=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for tool in python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 2; }
done
(cd "$root" && cargo build --quiet --release --bin kubectl-realip)
plugin=$root/target/release/kubectl-realip
work=$(mktemp -d /tmp/rpe-analyze.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 "$here/capture.py" "$connections" > "$work/evidence.jsonl"
grep -v -E '"type":"(evidence|ruleset|conntrack|route)"' "$work/evidence.jsonl" > "$work/plain.jsonl"

best() { # FILE: "wall_s rss_kb" of the fastest of $runs runs
  local best_wall="" best_rss="" wall rss
  for _ in $(seq "$runs"); do
    /usr/bin/time -o "$work/time" -f '%e %M' "$plugin" analyze -o json "$1" > /dev/null
    read -r wall rss < "$work/time"
    if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then
      best_wall=$wall best_rss=$rss
    fi
  done
  echo "$best_wall $best_rss"
}

printf '%-10s %12s %10s %10s\n' capture bytes wall_s rss_kb
for name in plain evidence; do
  read -r wall rss < <(best "$work/$name.jsonl")
  printf '%-10s %12s %10s %10s\n' "$name" "$(stat -c %s "$work/$name.jsonl")" "$wall" "$rss"
done
