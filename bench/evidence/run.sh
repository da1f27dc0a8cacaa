#!/usr/bin/env bash
# The cost of `realip-probe capture --evidence` on a node with many NAT rules: for each
# front-end (iptables-legacy, iptables-nft, kube-proxy's nftables mode), a network namespace gets
# RULES kube-proxy-shaped rules (bench/evidence/gen.py); then
#  - evidence-bench reads them ROUNDS times as the probe does at the start and the end of a
#    capture and prints the median read time, the time to build both ruleset events, their size
#    and its peak RSS;
#  - the tool people read the same rules with (iptables-legacy-save, iptables-nft-save,
#    nft list ruleset) is timed the same way, for comparison (median of ROUNDS);
#  - the probe itself captures for 2 s on lo with and without --evidence, under /usr/bin/time:
#    wall, user+system CPU and peak RSS of each, and the bytes of evidence lines it wrote.
#
# usage: sudo bench/evidence/run.sh [RULES] [ROUNDS]   (root; iproute2, nft, iptables, python3)
# env:   NS_PREFIX (namespace names, default rpe-)
set -euo pipefail
rules=${1:-10000}
rounds=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for tool in ip nft iptables-legacy-restore iptables-nft-restore python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 2; }
done
(cd "$root" && cargo build --quiet --release -p realip-probe --bin realip-probe --example evidence-bench)
probe=$root/target/release/realip-probe
bench=$root/target/release/examples/evidence-bench

ns=${NS_PREFIX:-rpe-}bench-$$
work=$(mktemp -d /tmp/rpe-bench.XXXXXX)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 "$here/gen.py" iptables "$rules" > "$work/rules.iptables"
python3 "$here/gen.py" nft "$rules" > "$work/rules.nft"

run_probe() { # FLAGS...: "wall_s cpu_s rss_kb evidence_bytes"
  ip netns exec "$ns" /usr/bin/time -o "$work/time" -f '%e %U %S %M' \
    "$probe" capture --iface lo --duration 2 "$@" > "$work/out" 2>/dev/null
  local wall user sys rss bytes
  read -r wall user sys rss < "$work/time"
  bytes=$(grep -E '"type":"(ruleset|evidence)"' "$work/out" | wc -c || true)
  echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}') $rss $bytes"
}

tool_ms() { # COMMAND...: median wall time in ms over $rounds runs, in the namespace
  local t=()
  for _ in $(seq "$rounds"); do
    local a b
    a=$(date +%s%N)
    ip netns exec "$ns" "$@" > /dev/null 2>&1
    b=$(date +%s%N)
    t+=($(( (b - a) / 1000000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

printf '%-16s %7s %9s %8s %10s %12s %10s %10s | %-26s %-26s\n' backend rules read_ms tool_ms \
  events_ms event_bytes end_bytes rss_kb "probe (wall cpu rss)" "--evidence (wall cpu rss bytes)"
for backend in iptables-legacy iptables-nft nftables; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  case $backend in
    iptables-legacy) ip netns exec "$ns" iptables-legacy-restore < "$work/rules.iptables"
      tool=(iptables-legacy-save -t nat) ;;
    iptables-nft) ip netns exec "$ns" iptables-nft-restore < "$work/rules.iptables"
      tool=(iptables-nft-save -t nat) ;;
    nftables) ip netns exec "$ns" nft -f "$work/rules.nft"
      tool=(nft list ruleset) ;;
  esac
  tms=$(tool_ms "${tool[@]}")
  json=$(ip netns exec "$ns" "$bench" "$rounds")
  field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$json" "$1"; }
  read -r w0 c0 r0 _ < <(run_probe)
  read -r w1 c1 r1 b1 < <(run_probe --evidence)
  printf '%-16s %7s %9s %8s %10s %12s %10s %10s | %5s s %5s s %6s KB   %5s s %5s s %6s KB %8s B\n' \
    "$backend" "$(field rules)" "$(field read_ms)" "$tms" "$(field events_ms)" \
    "$(field start_event_bytes)" "$(field end_event_bytes)" "$(field peak_rss_kb)" \
    "$w0" "$c0" "$r0" "$w1" "$c1" "$r1" "$b1"
done
