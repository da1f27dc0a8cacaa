#!/usr/bin/env python3
"""Writes the inputs of the explain benchmark (bench/explain/run.sh) into DIR:

- big.yaml: a Service, then its pods as `kubectl get pods -o yaml` lists them (one List), about
  8 MB of YAML;
- scalars.yaml: a Service, then one Pod whose args are 8 MB of one-letter values: the most
  values per byte a document can hold (no API server stores such an object);
- nested.yaml: a Service, then a 500 KB document that is one deeply nested flow mapping
  ({a: {a: {a: ...}}}), as a broken generator or a fuzzer writes.
"""
import sys
from pathlib import Path

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: LoadBalancer
  externalTrafficPolicy: Cluster
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 31080, protocol: TCP}
"""


def pod(i):
    env = "".join(
        f'      - name: SETTING_{j}\n        value: "value-{i}-{j}-abcdefghijklmnopqrstuvwxyz"\n'
        for j in range(12)
    )
    return (
        f"- apiVersion: v1\n"
        f"  kind: Pod\n"
        f"  metadata:\n"
        f"    name: web-{i}\n"
        f"    namespace: shop\n"
        f"    labels: {{app: web, pod-template-hash: 5d8f7c9b{i % 10}}}\n"
        f'    annotations: {{checksum/config: "{i:064x}"}}\n'
        f"  spec:\n"
        f"    nodeName: node-{i % 40}\n"
        f"    containers:\n"
        f"    - name: web\n"
        f"      image: registry.example/web:1.{i % 7}.0\n"
        f'      args: ["--listen", ":8080", "--workers", "4"]\n'
        f"      ports:\n"
        f"      - {{containerPort: 8080, protocol: TCP}}\n"
        f"      resources:\n"
        f"        requests: {{cpu: 100m, memory: 128Mi}}\n"
        f'        limits: {{cpu: "1", memory: 512Mi}}\n'
        f"      env:\n"
        + env
    )


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "big.yaml", "w") as f:
        f.write(SERVICE)
        f.write("---\napiVersion: v1\nkind: List\nitems:\n")
        i = 0
        while f.tell() < 8 * 1024 * 1024:
            f.write(pod(i))
            i += 1
    with open(out / "scalars.yaml", "w") as f:
        f.write(SERVICE)
        f.write("---\napiVersion: v1\nkind: Pod\nmetadata: {name: huge, namespace: shop}\n")
        f.write("spec: {containers: [{name: a, args: [")
        f.write("a, " * (8 * 1024 * 1024 // 3))
        f.write("b]}]}\n")
    depth = 500 * 1024 // 5
    with open(out / "nested.yaml", "w") as f:
        f.write(SERVICE)
        f.write("---\n" + "{a: " * depth + "1" + "}" * depth + "\n")


main()
