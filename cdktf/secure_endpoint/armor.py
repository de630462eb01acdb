"""Cloud Armor's decision for a client address, computed from a policy's rules.

Evaluated as Cloud Armor does: rules in ascending priority, the first enforced match wins;
`SRC_IPS_V1` ranges match addresses of their own family and `*` matches all; a rule in preview
mode is logged, not enforced. An expression rule (CEL: WAF signatures, headers, regions) depends
on more than the address, so it is reported as not evaluated rather than guessed. A policy the
API would refuse (two rules at one priority) or whose outcome is undocumented (the default rule
in preview) cannot be judged: `check_policy` says why.
"""

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secure_endpoint.free_text import unliteral

# Throttle and rate-based ban both let a client through up to their threshold.
ALLOWING_ACTIONS = ("allow", "throttle", "rate_based_ban")
DEFAULT_RULE_PRIORITY = 2147483647


class PolicyError(ValueError):
    """The rules do not form a policy whose decisions are documented."""


@dataclass(frozen=True)
class RateLimit:
    """A throttle's `rateLimitOptions`: at most `count` requests per `interval_sec` for each key."""

    count: int
    interval_sec: int
    conform_action: str = "allow"
    exceed_action: str = "deny(429)"
    enforce_on_key: str = "IP"
    enforce_on_key_name: str = ""

    def words(self) -> str:
        key = self.enforce_on_key or "ALL"
        named = f" {self.enforce_on_key_name}" if self.enforce_on_key_name else ""
        return (
            f"{self.count:,} requests per {self.interval_sec} s for each {key}{named} key, "
            f"then {self.exceed_action} (below it: {self.conform_action})"
        )


@dataclass(frozen=True)
class Rule:
    priority: int
    action: str
    description: str = ""
    src_ip_ranges: tuple[str, ...] = ()
    expression: str | None = None
    preview: bool = False
    rate_limit: RateLimit | None = None

    def label(self) -> str:
        return f"rule {self.priority}" + (f" ({self.description})" if self.description else "")


@dataclass(frozen=True)
class Decision:
    address: str
    rule: Rule | None
    previews: tuple[Rule, ...] = ()
    not_evaluated: tuple[Rule, ...] = field(default=())
    # `::ffff:203.0.113.4` is an IPv6 address: IPv4 ranges never match it.
    ipv4_mapped: str | None = None

    @property
    def action(self) -> str:
        return self.rule.action if self.rule else "no rule matched"

    @property
    def allowed(self) -> bool:
        return self.rule is not None and self.rule.action in ALLOWING_ACTIONS


def rules_from_terraform(policy: Mapping[str, Any]) -> list[Rule]:
    """The rules of a synthesized `google_compute_security_policy` resource, or of a
    `google_compute_region_security_policy` one, whose blocks are `rules` rather than `rule`."""
    rules = []
    for raw in policy.get("rule", []) or policy.get("rules", []):
        match = raw.get("match", {})
        rules.append(
            Rule(
                priority=int(raw["priority"]),
                action=raw["action"],
                description=unliteral(raw.get("description", "")),
                src_ip_ranges=tuple(match.get("config", {}).get("src_ip_ranges", ())),
                expression=(match.get("expr") or {}).get("expression"),
                preview=bool(raw.get("preview", False)),
                rate_limit=_rate_limit_from_terraform(raw.get("rate_limit_options")),
            )
        )
    return sorted(rules, key=lambda rule: rule.priority)


def _rate_limit_from_terraform(options: Mapping[str, Any] | list | None) -> RateLimit | None:
    if isinstance(options, list):  # Terraform JSON may give a block as a list of one
        options = options[0] if options else None
    if not options:
        return None
    threshold = options.get("rate_limit_threshold") or {}
    if isinstance(threshold, list):
        threshold = threshold[0] if threshold else {}
    return RateLimit(
        count=int(threshold.get("count", 0)),
        interval_sec=int(threshold.get("interval_sec", 0)),
        conform_action=options.get("conform_action", ""),
        exceed_action=options.get("exceed_action", ""),
        enforce_on_key=options.get("enforce_on_key", ""),
        enforce_on_key_name=options.get("enforce_on_key_name", ""),
    )


def check_policy(rules: Iterable[Rule]) -> None:
    """PolicyError when the API would refuse these rules or Cloud Armor documents no outcome."""
    by_priority: dict[int, list[Rule]] = {}
    for rule in rules:
        by_priority.setdefault(rule.priority, []).append(rule)
    shared = {priority: group for priority, group in by_priority.items() if len(group) > 1}
    if shared:
        priority, group = min(shared.items())
        raise PolicyError(
            f"{len(group)} rules share priority {priority} "
            f"({', '.join(repr(r.description or r.action) for r in group)}); "
            "the API refuses such a policy, so nothing can be said about what it lets in"
        )
    default = by_priority.get(DEFAULT_RULE_PRIORITY, [None])[0]
    if default is not None and default.preview:
        raise PolicyError(
            f"the default rule (priority {DEFAULT_RULE_PRIORITY}) is in preview mode, for which "
            "Cloud Armor documents no outcome; take it out of preview"
        )


def decide(rules: Iterable[Rule], address: str) -> Decision:
    """ValueError when `address` is not an IPv4 or IPv6 address."""
    ip = ipaddress.ip_address(address.strip())
    mapped = str(ip.ipv4_mapped) if ip.version == 6 and ip.ipv4_mapped else None
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
        return Decision(str(ip), rule, tuple(previews), tuple(not_evaluated), mapped)
    return Decision(str(ip), None, tuple(previews), tuple(not_evaluated), mapped)


def _matches(rule: Rule, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for text in rule.src_ip_ranges:
        if text == "*":
            return True
        network = ipaddress.ip_network(text, strict=False)
        if network.version == ip.version and ip in network:
            return True
    return False
