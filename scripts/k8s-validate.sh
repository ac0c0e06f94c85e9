#!/usr/bin/env bash
# Validate the Kubernetes manifests (proxy/packaging/kubernetes/*.yaml) against the Kubernetes
# API schemas with kubernetes-validate (PyPI; it carries the schemas, no cluster needed), in
# strict mode (unknown fields are errors), for the oldest and newest Kubernetes versions we
# document; then check that every key of the proxy configuration they embed is a flag of
# `cosmian_vm_proxy server` (the proxy refuses unknown keys at start), and so is every key of the
# packaged proxy.toml, the commented-out ones included (a user uncomments them).
# Usage: scripts/k8s-validate.sh [PROXY_BINARY]   (default target/debug/cosmian_vm_proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
proxy=${1:-target/debug/cosmian_vm_proxy}
manifests=(proxy/packaging/kubernetes/*.yaml)
for version in 1.28.0 1.34.0; do
    kubernetes-validate --strict --quiet -k "$version" "${manifests[@]}"
    echo "k8s: ${#manifests[@]} manifests valid against Kubernetes $version (strict)"
done
flags=$("$proxy" server --help | grep -oE -- '--[a-z0-9-]+' | sort -u)
python3 - "$flags" "${manifests[@]}" <<'PY'
import re, sys, tomllib, yaml
flags = set(f[2:] for f in sys.argv[1].split())
bad = []
packaged = "proxy/packaging/proxy.toml"
text = open(packaged).read()
tomllib.loads(text)
for line in text.splitlines():
    m = re.match(r"^#? ?([a-z][a-z0-9-]*) = ", line)
    if m and m.group(1) not in flags:
        bad.append(f"{packaged}: {m.group(1)} is not a cosmian_vm_proxy flag")
print(f"k8s: {packaged}: keys (commented ones included) are proxy flags")
for path in sys.argv[2:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "ConfigMap":
            continue
        for name, text in (doc.get("data") or {}).items():
            if name != "proxy.toml":
                continue
            for key in tomllib.loads(text):
                if key not in flags:
                    bad.append(f"{path}: ConfigMap {doc['metadata']['name']} proxy.toml: {key} is not a cosmian_vm_proxy flag")
            print(f"k8s: {path}: proxy.toml keys are proxy flags")
if bad:
    sys.exit("\n".join(bad))
PY
