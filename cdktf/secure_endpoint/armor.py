"""Cloud Armor's decision for a client address, computed from a policy's rules.

Evaluated as Cloud Armor does: rules in ascending priority, the first enforced match wins;
`SRC_IPS_V1` ranges match IPv4 and IPv6 addresses and `*` matches all; a rule in preview mode is
logged, not enforced. An expression rule (CEL: WAF signatures, headers, regions) depends on more
than the address, so it is reported as not evaluated rather than guessed.
"""

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOWING_ACTIONS = ("allow", "throttle")  # throttle: allowed up to the rate limit


@dataclass(frozen=True)
class Rule:
    priority: int
    action: str
    description: str = ""
    src_ip_ranges: tuple[str, ...] = ()
    expression: str | None = None
    preview: bool = False

    def label(self) -> str:
        return f"rule {self.priority}" + (f" ({self.description})" if self.description else "")


@dataclass(frozen=True)
class Decision:
    address: str
    rule: Rule | None
    previews: tuple[Rule, ...] = ()
    not_evaluated: tuple[Rule, ...] = field(default=())

    @property
    def action(self) -> str:
        return self.rule.action if self.rule else "no rule matched"

    @property
    def allowed(self) -> bool:
        return self.rule is not None and self.rule.action in ALLOWING_ACTIONS


def rules_from_terraform(policy: Mapping[str, Any]) -> list[Rule]:
    """The rules of a synthesized `google_compute_security_policy` resource."""
    rules = []
    for raw in policy.get("rule", []):
        match = raw.get("match", {})
        rules.append(
            Rule(
                priority=int(raw["priority"]),
                action=raw["action"],
                description=raw.get("description", ""),
                src_ip_ranges=tuple(match.get("config", {}).get("src_ip_ranges", ())),
                expression=(match.get("expr") or {}).get("expression"),
                preview=bool(raw.get("preview", False)),
            )
        )
    return sorted(rules, key=lambda rule: rule.priority)


def decide(rules: Iterable[Rule], address: str) -> Decision:
    """ValueError when `address` is not an IPv4 or IPv6 address."""
    ip = ipaddress.ip_address(address.strip())
    previews, not_evaluated = [], []
    for rule in sorted(rules, key=lambda r: r.priority):
        if rule.expression is not None:
            not_evaluated.append(rule)
            continue
        if not _matches(rule, ip):
            continue
        if rule.preview:
            previews.append(rule)
            continue
        return Decision(str(ip), rule, tuple(previews), tuple(not_evaluated))
    return Decision(str(ip), None, tuple(previews), tuple(not_evaluated))


def _matches(rule: Rule, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for text in rule.src_ip_ranges:
        if text == "*":
            return True
        network = ipaddress.ip_network(text, strict=False)
        if network.version == ip.version and ip in network:
            return True
    return False
