#!/usr/bin/env python3
"""Writes a probe JSONL capture of two nodes with --evidence, for the plugin side of the
evidence benchmark (analyze.sh): N client connections to node-a's NodePort, each DNATed by one
of ENDPOINTS kube-proxy endpoint chains to a pod on node-b and masqueraded (four SYN sightings),
with each node's conntrack entry of it, the route toward each pod, and each node's NAT rules at
the start and the end (the end listing the rules that moved, at most 500 as the probe does).

usage: capture.py CONNECTIONS [ENDPOINTS] > capture.jsonl
"""

import json
import random
import sys

connections = int(sys.argv[1])
endpoints = int(sys.argv[2]) if len(sys.argv) > 2 else 500
rng = random.Random(7)
NODE_A, NODE_B = "198.51.100.1", "198.51.100.2"
MAX_RULES = 500


def line(event, node, ts, **body):
    return json.dumps({"v": 1, "type": event, "ts_ns": ts, "node": node, **body},
                      separators=(",", ":"))


def iface(index, name, kind, address):
    return {"index": index, "name": name, "kind": kind, "link_type": "ethernet",
            "addresses": [address] if address else [], "mtu": 1500}


def pod(i):
    return f"10.244.{1 + i // 250}.{1 + i % 250}"


def rule(chain, position, text, nat, packets, delta, owner="kube-proxy", why=("moved",)):
    return {"backend": "iptables-nft", "family": "ip", "table": "nat", "chain": chain,
            "position": position, "handle": position, "syntax": "iptables", "text": text,
            "owner": owner, "owner_from": "chain", "packets": packets, "bytes": packets * 60,
            "delta_packets": delta, "delta_bytes": delta * 60, "nat": nat, "why": list(why)}


def sep(i):
    return f"KUBE-SEP-{i:016d}"


def rules(hits):
    """node-a's listed rules: the masquerade, and the endpoint DNATs that moved (`hits`)."""
    out = [rule("KUBE-POSTROUTING", 3,
                "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic "
                "requiring SNAT\" -j MASQUERADE --random-fully",
                {"kind": "masquerade", "flags": ["fully-random"]},
                sum(hits), sum(hits), why=("source-nat", "moved") if sum(hits) else ("source-nat",))]
    moved = [i for i, n in enumerate(hits) if n]
    for i in moved[:MAX_RULES - 1]:
        out.append(rule(sep(i), 2,
                        f"-A {sep(i)} -p tcp -m comment --comment \"shop/web:http\" -m tcp -j "
                        f"DNAT --to-destination {pod(i)}:8080",
                        {"kind": "dnat", "addr_min": pod(i), "addr_max": pod(i),
                         "port_min": 8080, "port_max": 8080}, hits[i], hits[i]))
    return out, max(0, len(moved) - (MAX_RULES - 1))


events = []
t = 1_000_000_000
for node, ifaces in [
    ("node-a", [iface(2, "eth0", "uplink", NODE_A + "/24")]),
    ("node-b", [iface(2, "eth0", "uplink", NODE_B + "/24"), iface(7, "veth1", "veth", "")]),
]:
    events.append((0, line("hello", node, 1, probe_version="0.1.0", interfaces=ifaces,
                           filter="tcp syn", l7=False)))
    events.append((0, line("evidence", node, 2, available=True,
                           sources=[{"name": "nftables", "state": "read"}])))
start_rules, _ = rules([0] * endpoints)
events.append((0, line("ruleset", "node-a", 3, phase="start", tables=[], rules=start_rules[:1],
                       summarised=4 * endpoints)))
events.append((0, line("ruleset", "node-b", 3, phase="start", tables=[], rules=[],
                       summarised=4 * endpoints)))
hits = [0] * endpoints
routed = set()
for n in range(connections):
    t += rng.randrange(1_000, 400_000)
    isn = rng.getrandbits(32)
    tsval = rng.getrandbits(32)
    client = f"203.0.113.{1 + n % 250}"
    sport = 1024 + n % 60000
    nport = 1024 + (n * 7) % 60000
    i = rng.randrange(endpoints)
    hits[i] += 1
    common = {"isn": isn, "tsval": tsval, "ip_id": n % 65536}
    events.append((t, line("syn", "node-a", t, iface="eth0", dir="in", src=client, sport=sport,
                           dst=NODE_A, dport=31080, ttl=60, **common)))
    events.append((t + 20_000, line("syn", "node-a", t + 20_000, iface="eth0", dir="out",
                                    src=NODE_A, sport=nport, dst=pod(i), dport=8080, ttl=59,
                                    **common)))
    events.append((t + 150_000, line("syn", "node-b", t + 150_000, iface="eth0", dir="in",
                                     src=NODE_A, sport=nport, dst=pod(i), dport=8080, ttl=59,
                                     **common)))
    events.append((t + 170_000, line("syn", "node-b", t + 170_000, iface="veth1", dir="out",
                                     src=NODE_A, sport=nport, dst=pod(i), dport=8080, ttl=58,
                                     **common)))
    tcp = {"proto": 6}
    events.append((t + 100_000_000, line(
        "conntrack", "node-a", t + 100_000_000, isn=isn, iface="eth0", dir="in",
        orig={"src": client, "sport": sport, "dst": NODE_A, "dport": 31080, **tcp},
        reply={"src": pod(i), "sport": 8080, "dst": NODE_A, "dport": nport, **tcp},
        status=["confirmed", "src-nat", "dst-nat"], status_bits=56, mark=0, zone=0,
        src_nat=True, dst_nat=True, tcp_state="ESTABLISHED")))
    events.append((t + 100_150_000, line(
        "conntrack", "node-b", t + 100_150_000, isn=isn, iface="eth0", dir="in",
        orig={"src": NODE_A, "sport": nport, "dst": pod(i), "dport": 8080, **tcp},
        reply={"src": pod(i), "sport": 8080, "dst": NODE_A, "dport": nport, **tcp},
        status=["confirmed"], status_bits=8, mark=0, zone=0, src_nat=False, dst_nat=False,
        tcp_state="ESTABLISHED")))
    if i not in routed:
        routed.add(i)
        events.append((t + 100_000_001, line(
            "route", "node-a", t + 100_000_001, dst=pod(i), snat_to=NODE_A, oif="eth0",
            oif_index=2, gateway=NODE_B, prefsrc=NODE_A, masquerade_source=NODE_A, table=254,
            kind="unicast", oif_addresses=[NODE_A + "/24"])))
end = t + 1_000_000_000
end_rules, left_out = rules(hits)
events.append((end, line("ruleset", "node-a", end, phase="end", tables=[], rules=end_rules,
                         summarised=4 * endpoints - len(end_rules) - left_out,
                         left_out=left_out)))
events.append((end, line("ruleset", "node-b", end, phase="end", tables=[], rules=[],
                         summarised=4 * endpoints)))
for node in ("node-a", "node-b"):
    events.append((end + 1, line("evidence", node, end + 1, available=True,
                                 sources=[{"name": "nftables", "state": "read"}], last=True,
                                 conntrack_lookups=connections, conntrack_found=connections)))
events.sort(key=lambda e: e[0])
out = sys.stdout
for _, text in events:
    out.write(text)
    out.write("\n")
