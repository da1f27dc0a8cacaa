#!/usr/bin/env bash
# Probe vs tcpdump on one veth uplink: SYNS SYNs and 2×SYNS non-SYN segments (ACKs and
# PSH/ACKs with 64 payload bytes) arrive interleaved at trafgen's top rate. Both listen with the
# same SYN filter, side by side. Prints SYNs seen, drops, CPU time and peak RSS of each.
#
# usage: sudo bench/probe/run.sh [PROBE_BINARY]      (root; needs iproute2, tcpdump, netsniff-ng)
# env:   SYNS (default 100000), ROUNDS (default 3), NS_PREFIX (namespace names, default rpc-)
set -euo pipefail

probe=${1:-target/x86_64-unknown-linux-gnu/release/realip-probe}
syns=${SYNS:-100000}
rounds=${ROUNDS:-3}
for tool in ip tcpdump trafgen; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 2; }
done
[ -x "$probe" ] || { echo "bench: no probe binary at $probe (build it first)" >&2; exit 2; }

id=$$
prefix=${NS_PREFIX:-rpc-}
gen=${prefix}bgen-$id
node=${prefix}bnode-$id
work=$(mktemp -d /tmp/rpc-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns del "$gen" 2>/dev/null || true
  ip netns del "$node" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$gen"
ip netns add "$node"
ip link add gen0 netns "$gen" type veth peer name eth0 netns "$node"
ip -n "$node" link set lo up
ip -n "$node" addr add 198.18.0.1/24 dev eth0
ip -n "$node" link set eth0 up
ip -n "$node" route add default via 198.18.0.254 dev eth0 onlink
ip -n "$gen" link set gen0 up
mac() { ip -n "$1" -o link show "$2" | sed -E 's/.*link\/ether ([0-9a-f:]+).*/\1/'; }
bytes() { echo "0x$1" | sed 's/:/, 0x/g'; }
dst=$(bytes "$(mac "$node" eth0)")
src=$(bytes "$(mac "$gen" gen0)")

# 198.18.0.2 -> 198.18.0.1:8080. Random IP id, source port, sequence and TSval per packet.
cat >"$work/flood.cfg" <<CFG
/* SYN with timestamps */
{ $dst, $src, 0x08, 0x00,
  0x45, 0x00, 0x00, 0x34, drnd(2), 0x40, 0x00, 0x40, 0x06, csumip(14, 33),
  198, 18, 0, 2, 198, 18, 0, 1,
  drnd(2), 0x1f, 0x90, drnd(4), 0x00, 0x00, 0x00, 0x00, 0x80, 0x02, 0xfa, 0xf0,
  csumtcp(14, 34), 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, drnd(4), 0x00, 0x00, 0x00, 0x00 }
/* ACK */
{ $dst, $src, 0x08, 0x00,
  0x45, 0x00, 0x00, 0x28, drnd(2), 0x40, 0x00, 0x40, 0x06, csumip(14, 33),
  198, 18, 0, 2, 198, 18, 0, 1,
  drnd(2), 0x1f, 0x90, drnd(4), drnd(4), 0x50, 0x10, 0xfa, 0xf0,
  csumtcp(14, 34), 0x00, 0x00 }
/* PSH/ACK with 64 payload bytes */
{ $dst, $src, 0x08, 0x00,
  0x45, 0x00, 0x00, 0x68, drnd(2), 0x40, 0x00, 0x40, 0x06, csumip(14, 33),
  198, 18, 0, 2, 198, 18, 0, 1,
  drnd(2), 0x1f, 0x90, drnd(4), drnd(4), 0x50, 0x18, 0xfa, 0xf0,
  csumtcp(14, 34), 0x00, 0x00, fill(0x41, 64) }
CFG

# The probe's kernel filter, in tcpdump's words.
filter='(ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn) or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)'

# CPU time on the scheduler's clock (ns precision), summed over threads; utime/stime ticks are
# too coarse for runs this short.
cpu_ms() { cat /proc/"$1"/task/*/schedstat | awk '{ ns += $1 } END { printf "%.1f", ns / 1e6 }'; }
# The kernel's user/system split, in 10 ms ticks (CLK_TCK = 100): a rough second opinion.
split_ms() { awk '{ printf "user %d ms, sys %d ms (ticks)", $14 * 10, $15 * 10 }' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

row() { printf '%-5s %-12s %9s %7s %9s %9s %9s\n' "$@"; }
row round tool syns drops cpu_ms rss_kib elapsed_s
for round in $(seq "$rounds"); do
  ip netns exec "$node" "$probe" capture --iface eth0 --node bench --stats-interval 1 \
    >"$work/probe.jsonl" 2>"$work/probe.err" &
  probe_pid=$!
  # tcpdump as usually run: decoding each SYN and printing it (-v: TTL, IP id, options).
  ip netns exec "$node" tcpdump -i eth0 -n -tt -v "$filter" \
    >"$work/tcpdump.txt" 2>"$work/tcpdump-text.err" &
  text_pid=$!
  # tcpdump at its leanest: raw frames into a pcap file, no decoding.
  ip netns exec "$node" tcpdump -i eth0 -n -w "$work/tcpdump.pcap" "$filter" \
    2>"$work/tcpdump-w.err" &
  dump_pid=$!
  pids+=("$probe_pid" "$text_pid" "$dump_pid")
  for _ in $(seq 100); do
    grep -q '"type":"hello"' "$work/probe.jsonl" && grep -q 'listening on' "$work/tcpdump-w.err" \
      && grep -q 'listening on' "$work/tcpdump-text.err" && break
    sleep 0.1
  done

  start=$(date +%s.%N)
  ip netns exec "$gen" trafgen --dev gen0 --conf "$work/flood.cfg" --num $((syns * 3)) \
    --cpus 1 --no-sock-mem >"$work/trafgen.out" 2>"$work/trafgen.err" || {
    cat "$work/trafgen.err" >&2; exit 1; }
  elapsed=$(printf %.2f "$(echo "$(date +%s.%N) - $start" | bc)")
  sleep 1.5   # every ring retires its last block; the probe writes a stats line

  declare -A cpu rss split
  for tool in probe text dump; do
    pid_var=${tool}_pid
    cpu[$tool]=$(cpu_ms "${!pid_var}")
    rss[$tool]=$(hwm_kib "${!pid_var}")
    split[$tool]=$(split_ms "${!pid_var}")
  done
  kill -TERM "$probe_pid" "$text_pid" "$dump_pid"
  wait "$probe_pid" || { echo "bench: probe exited with $?" >&2; cat "$work/probe.err" >&2; exit 1; }
  wait "$text_pid" || true
  wait "$dump_pid" || true

  probe_syns=$(grep -c '"type":"syn"' "$work/probe.jsonl" || true)
  probe_drops=$(grep '"last":true' "$work/probe.jsonl" | sed -E 's/.*"drops":([0-9]+).*/\1/')
  dump_syns=$(tcpdump -r "$work/tcpdump.pcap" -n 2>/dev/null | wc -l)
  dropped() { sed -nE 's/^([0-9]+) packets dropped by kernel.*/\1/p' "$1"; }
  captured() { sed -nE 's/^([0-9]+) packets captured.*/\1/p' "$1"; }

  # Every SYN tcpdump captured must be among the probe's (by source port and ISN).
  tcpdump -r "$work/tcpdump.pcap" -n 2>/dev/null \
    | sed -nE 's/.*\.([0-9]+) > .*, seq ([0-9]+),.*/\1 \2/p' | sort >"$work/dump.keys"
  sed -nE 's/.*"type":"syn".*"sport":([0-9]+),.*"isn":([0-9]+),.*/\1 \2/p' "$work/probe.jsonl" \
    | sort >"$work/probe.keys"
  missing=$(comm -23 "$work/dump.keys" "$work/probe.keys" | wc -l)

  row "$round" probe "$probe_syns" "$probe_drops" "${cpu[probe]}" "${rss[probe]}" "$elapsed"
  row "$round" tcpdump-text "$(captured "$work/tcpdump-text.err")" \
    "$(dropped "$work/tcpdump-text.err")" "${cpu[text]}" "${rss[text]}" "$elapsed"
  row "$round" tcpdump-w "$dump_syns" "$(dropped "$work/tcpdump-w.err")" "${cpu[dump]}" \
    "${rss[dump]}" "$elapsed"
  echo "      ticks: probe ${split[probe]}; tcpdump-text ${split[text]}; tcpdump-w ${split[dump]}"
  echo "      output bytes: probe $(stat -c %s "$work/probe.jsonl"), tcpdump-text $(stat -c %s "$work/tcpdump.txt"), tcpdump-w $(stat -c %s "$work/tcpdump.pcap")"
  echo "      SYNs tcpdump captured that the probe did not report: $missing"
  pids=()
done
