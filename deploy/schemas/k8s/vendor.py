"""Re-create the vendored Kubernetes schema subset from the kubernetes-validate wheel.

    pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    python deploy/schemas/k8s/vendor.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl

It copies, unmodified, the definitions of the kinds the manifests use (ROOTS) and every
definition they reference, out of the wheel's ``v1.33.0-local-strict/_definitions.json``, into
``kubernetes-v1.33.0-strict.json`` next to this script. See README.md for the provenance.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

K8S_VERSION = "v1.33.0"
MEMBER = f"kubernetes_validate/kubernetes-json-schema/{K8S_VERSION}-local-strict/_definitions.json"
OUTPUT = Path(__file__).with_name(f"kubernetes-{K8S_VERSION}-strict.json")
ROOTS = (
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
)
REF_PREFIX = "#/$defs/"


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(REF_PREFIX):]} if str(node.get("$ref", "")).startswith(
            REF_PREFIX) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def subset(definitions: dict[str, object], roots: tuple[str, ...] = ROOTS) -> dict[str, object]:
    wanted: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(_refs(definitions[name]) - wanted)
    return {name: definitions[name] for name in sorted(wanted)}


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(MEMBER)
    source = json.loads(raw)
    document = {
        "$schema": source["$schema"],
        "$id": f"https://customllm.dev/schemas/k8s/kubernetes-{K8S_VERSION}-strict.json",
        "description": f"Subset of kubernetes-validate's {K8S_VERSION}-local-strict "
                       f"_definitions.json (sha256 {hashlib.sha256(raw).hexdigest()}); "
                       "definitions copied unmodified. See README.md.",
        "$defs": subset(source["$defs"]),
    }
    OUTPUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    digest = hashlib.sha256(OUTPUT.read_bytes()).hexdigest()
    sys.stdout.write(f"{OUTPUT.name}: {len(document['$defs'])} definitions, sha256 {digest}\n")


if __name__ == "__main__":
    main(sys.argv[1])
