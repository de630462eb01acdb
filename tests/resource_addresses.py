"""The addresses Terraform keys its state by, for both stacks under each settings variant.

A changed logical id is a destroy and a create on the next deploy (the service, the NEG, the
policy, a bucket), so a toolchain change must leave these as they are. The snapshot in
tests/data/resource_addresses.json is this module's output, taken before such a change:

    .venv/bin/python -m tests.resource_addresses          # rewrite the snapshot
"""

import json
import sys
import tempfile
from pathlib import Path

from tests.infra import BASE_ENV

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "resource_addresses.json"

_BASE = {**BASE_ENV, "MODEL_BUCKET": "p-models"}
# The shapes the tests synthesize: plain HTTP, a canary arm, HTTPS with IPv6, a domain move.
# The first writes both stacks; the bootstrap reads none of the others' settings.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "canary": {"CANARY_MODEL_URI": "gs://demo-models/models/iris/cd827946f6342979/model.onnx", "CANARY_PERCENT": "5"},
    "https-ipv6": {"DOMAIN": "api.example.com", "IPV6": "true"},
    "https-ipv6-canary": {
        "DOMAIN": "api.example.com",
        "IPV6": "true",
        "CANARY_MODEL_URI": "gs://other-models/models/iris/cd827946f6342979/model.onnx",
        "CANARY_PERCENT": "20",
    },
    "domain-move": {"DOMAIN": "api2.example.com", "PREVIOUS_DOMAIN": "api.example.com"},
}


def addresses(stack: dict) -> dict[str, list[str]]:
    """`type.name` of every resource and data source, and every output's name, sorted."""
    return {
        "resource": sorted(f"{kind}.{name}" for kind, named in stack.get("resource", {}).items() for name in named),
        "data": sorted(f"data.{kind}.{name}" for kind, named in stack.get("data", {}).items() for name in named),
        "output": sorted(stack.get("output", {})),
    }


def from_outdir(outdir: Path) -> dict[str, dict[str, list[str]]]:
    """The addresses of every stack a synth wrote to `outdir` (a cdktf.out)."""
    return {
        path.parent.name: addresses(json.loads(path.read_text()))
        for path in sorted((outdir / "stacks").glob("*/cdk.tf.json"))
    }


def synthesize_variant(name: str, outdir: Path) -> dict[str, dict[str, list[str]]]:
    from secure_endpoint.app import ALL, read_settings, synthesize
    from secure_endpoint.settings import STACK_NAME

    stacks = ALL if name == next(iter(VARIANTS)) else STACK_NAME
    synthesize(read_settings(stacks, {**_BASE, **VARIANTS[name]}), outdir)
    return from_outdir(outdir)


def snapshot() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return {name: synthesize_variant(name, Path(tmp) / name) for name in VARIANTS}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "cdktf"))
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=2) + "\n")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}")
