"""Synthesizing the stack in-process, once per distinct settings, and reading the result."""

import json
import re
from typing import Any

BASE_ENV = {"PROJECT_ID": "p", "MODEL_URI": "gs://demo-models/model.onnx", "ALLOWED_IP_RANGES": "203.0.113.4"}


class Synthesized:
    """The Terraform JSON of one stack, with look-ups by resource type."""

    def __init__(self, text: str):
        self.json: dict[str, Any] = json.loads(text)

    def resources(self, kind: str) -> dict[str, dict]:
        return self.json.get("resource", {}).get(kind, {})

    def one(self, kind: str) -> dict:
        (resource,) = self.resources(kind).values()
        return resource

    def address(self, kind: str, attribute: str) -> str:
        """`${kind.<the only one>.attribute}`: what a reference to it looks like."""
        (name,) = self.resources(kind)
        return f"${{{kind}.{name}.{attribute}}}"

    def address_of(self, kind: str, **attributes) -> str:
        """`${kind.<the one with these attributes>.address}`."""
        (name,) = [key for key, r in self.resources(kind).items() if attributes.items() <= r.items()]
        return f"${{{kind}.{name}.address}}"

    def policy_rules(self) -> list[dict]:
        return sorted(self.one("google_compute_security_policy")["rule"], key=lambda r: r["priority"])


def is_reference(value: str) -> bool:
    return bool(re.fullmatch(r"\$\{[a-z0-9_]+\.[A-Za-z0-9_-]+\.[a-z_]+\}", value))
