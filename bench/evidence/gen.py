#!/usr/bin/env python3
"""Writes kube-proxy-shaped NAT rules for `run.sh`: RULES rules in all, four per Service
(the ClusterIP match, the service chain's jump, the endpoint's hairpin mark, its DNAT), plus the
fixed chains kube-proxy always has.

usage: gen.py iptables|nft RULES > rules
"""
import sys

kind, total = sys.argv[1], int(sys.argv[2])
services = max(1, (total - 8) // 4)


def ips(i):
    return f"10.96.{i // 250}.{i % 250 + 1}", f"10.244.{i // 250}.{i % 250 + 1}"


if kind == "iptables":
    out = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-POSTROUTING - [0:0]",
           ":KUBE-MARK-MASQ - [0:0]"]
    out += [f":KUBE-SVC-{i} - [0:0]\n:KUBE-SEP-{i} - [0:0]" for i in range(services)]
    out += [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    for i in range(services):
        vip, pod = ips(i)
        out += [
            f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "bench/svc-{i}:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-{i}',
            f'-A KUBE-SVC-{i} -m comment --comment "bench/svc-{i}:http -> {pod}:8080" -j KUBE-SEP-{i}',
            f'-A KUBE-SEP-{i} -s {pod}/32 -m comment --comment "bench/svc-{i}:http" -j KUBE-MARK-MASQ',
            f'-A KUBE-SEP-{i} -p tcp -m comment --comment "bench/svc-{i}:http" -m tcp -j DNAT --to-destination {pod}:8080',
        ]
    out.append("COMMIT")
else:
    out = ["table ip kube-proxy {",
           "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }",
           "  chain mark-for-masquerade { meta mark set meta mark or 0x4000; }",
           "  chain masquerading { meta mark & 0x4000 == 0 return; meta mark set meta mark xor 0x4000; masquerade fully-random; }",
           "  chain nat-prerouting { type nat hook prerouting priority -100; policy accept; jump services; }",
           "  chain nat-output { type nat hook output priority -100; policy accept; jump services; }",
           "  chain nat-postrouting { type nat hook postrouting priority 100; policy accept; jump masquerading; }",
           "  chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }"]
    for i in range(services):
        vip, pod = ips(i)
        out += [
            f"  chain service-{i}-bench/svc-{i}/tcp/http {{",
            f"    ip daddr {vip} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            f"    numgen random mod 1 vmap {{ 0 : goto endpoint-{i}-bench/svc-{i}/tcp/http__{pod}/8080 }}",
            "  }",
            f"  chain endpoint-{i}-bench/svc-{i}/tcp/http__{pod}/8080 {{",
            f"    ip saddr {pod} jump mark-for-masquerade",
            f"    meta l4proto tcp dnat to {pod}:8080",
            "  }",
        ]
    out.append("}")
    elements = ", ".join(f"{ips(i)[0]} . tcp . 80 : goto service-{i}-bench/svc-{i}/tcp/http"
                         for i in range(services))
    out.append(f"add element ip kube-proxy service-ips {{ {elements} }}")
print("\n".join(out))
