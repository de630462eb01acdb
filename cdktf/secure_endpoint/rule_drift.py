"""The live policy's rules against the code's, in plain words: which ranges each lets in and by
which action, their rate limits, rules in preview, the order of the allow and WAF rules, and every
other field the code sets on a rule (expression, description), compared at each priority.
"""

import ipaddress
from collections.abc import Iterable, Iterator

from secure_endpoint.armor import ALLOWING_ACTIONS, DEFAULT_RULE_PRIORITY, Rule
from secure_endpoint.plan import DENY


def rule_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Every difference between the code's rules and the live ones."""
    differences = _range_drift(expected, actual) + _action_drift(expected, actual)
    differences += _rate_limit_drift(expected, actual) + _order_drift(expected, actual)
    differences += _preview_drift(expected, actual) + _rule_drift(expected, actual)
    differences += _description_drift(expected, actual)
    defaults = [rule for rule in actual if rule.priority == DEFAULT_RULE_PRIORITY]
    if not defaults or defaults[0].action != DENY or defaults[0].src_ip_ranges != ("*",):
        found = f"{defaults[0].action} on {list(defaults[0].src_ip_ranges)}" if defaults else "missing"
        differences.append(f"the default rule is {found}; expected {DENY} on ['*']")
    if defaults and defaults[0].preview:
        differences.append(
            "the default rule is in preview mode, for which Cloud Armor documents no outcome; "
            "the code keeps it enforced"
        )
    return differences


# `*` matches every address of both families.
EVERYONE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _lets_through(rule: Rule) -> bool:
    return rule.action in ALLOWING_ACTIONS and rule.expression is None


def _networks(rule: Rule) -> Iterator:
    for text in rule.src_ip_ranges:
        yield from EVERYONE if text == "*" else (ipaddress.ip_network(text, strict=False),)


def _allowed_ranges(rules: Iterable[Rule]) -> set:
    return {network for rule in rules if _lets_through(rule) and not rule.preview for network in _networks(rule)}


def _actions_by_range(rules: Iterable[Rule]) -> dict:
    """Range -> the action of the first enforced rule that lets it through."""
    actions: dict = {}
    for rule in sorted(rules, key=lambda rule: rule.priority):
        if _lets_through(rule) and not rule.preview:
            for network in _networks(rule):
                actions.setdefault(network, rule.action)
    return actions


_ACTION_WORDS = {
    "allow": "allow (no rate limit)",
    "throttle": "throttle (a rate limit, 429 above it)",
    "rate_based_ban": "rate_based_ban (a rate limit that bans the client for a while above it)",
}


def _action_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Ranges let through by both, but by another action: same ranges, a rate limit added or lost."""
    want, have = _actions_by_range(expected), _actions_by_range(actual)
    changed: dict[tuple[str, str], set] = {}
    for network in want.keys() & have.keys():
        if want[network] != have[network]:
            changed.setdefault((have[network], want[network]), set()).add(network)
    differences = []
    for (live_action, code_action), networks in sorted(changed.items()):
        names = _named(networks)
        them = "it" if len(names) == 1 else "them"
        differences.append(
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} let through by "
            f"{_ACTION_WORDS.get(live_action, live_action)} on the live policy; the code lets {them} through by "
            f"{_ACTION_WORDS.get(code_action, code_action)}"
        )
    return differences


def _preview_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Allow or throttle rules in preview mode let no one in, but they are not the code either:
    turning preview off in the console would let their ranges in at once."""
    want = {rule.priority: rule for rule in expected if _lets_through(rule)}
    differences = []
    for rule in actual:
        if not (_lets_through(rule) and rule.preview) or want.get(rule.priority) == rule:
            continue
        ranges = ", ".join(_named(set(_networks(rule)))) or "no ranges"
        code = want.get(rule.priority)
        if code is not None and not code.preview and set(_networks(code)) == set(_networks(rule)):
            differences.append(
                f"rule {rule.priority} ({code.description}) is in preview mode on the live policy: it only logs "
                f"and lets none of {ranges} in; the code enforces it"
            )
        else:
            differences.append(
                f"rule {rule.priority} ({rule.action} in preview mode: {rule.description or 'no description'}) "
                f"on {ranges} is live but not in the code; preview only logs, so it lets no one in yet, "
                "but taking it out of preview would let those ranges in"
            )
    return differences


def _range_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    want, have = _allowed_ranges(expected), _allowed_ranges(actual)
    return [
        *(f"{n} is allowed by the code but not by the live policy" for n in _named(want - have)),
        *(f"{n} is allowed by the live policy but not by the code" for n in _named(have - want)),
    ]


def _named(networks: set) -> list[str]:
    if set(EVERYONE) <= networks:
        return ["everyone (*)"] + _named(networks - set(EVERYONE))
    return [str(n) for n in sorted(networks, key=lambda n: (n.version, n))]


def _rule_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Rules other than the allowlist and the default: WAF, and anything added by hand, compared
    field by field at each priority."""

    def others(rules):
        return {
            rule.priority: rule
            for rule in rules
            if rule.priority != DEFAULT_RULE_PRIORITY
            and not (rule.action in ALLOWING_ACTIONS and rule.expression is None)
        }

    want, have = others(expected), others(actual)
    differences = []
    for priority in sorted(want.keys() | have.keys()):
        code, live_rule = want.get(priority), have.get(priority)
        if live_rule is None:
            differences.append(f"rule {priority} ({code.description}) is in the code but not live")
        elif code is None:
            differences.append(
                f"rule {priority} ({live_rule.action}: {live_rule.description or 'no description'}) "
                "is live but not in the code"
            )
        else:
            fields = _differing_fields(code, live_rule)
            if fields:
                differences.append(f"rule {priority} ({code.description}) differs from the code in {_and(fields)}")
    return differences


def _differing_fields(code: Rule, live_rule: Rule) -> list[str]:
    """Every field the code sets that the live rule has otherwise, in words."""
    fields = []
    if code.action != live_rule.action:
        fields.append(f"its action ({live_rule.action} live, {code.action} in the code)")
    if code.expression != live_rule.expression:
        fields.append(f"its expression (live: {live_rule.expression or 'none'!r})")
    if set(code.src_ip_ranges) != set(live_rule.src_ip_ranges):
        fields.append(f"its ranges (live: {', '.join(live_rule.src_ip_ranges) or 'none'})")
    if code.preview != live_rule.preview:
        state = "on live, off in the code" if live_rule.preview else "off live, on in the code"
        fields.append(f"preview mode ({state})")
    if code.rate_limit != live_rule.rate_limit:
        live_words = live_rule.rate_limit.words() if live_rule.rate_limit else "none"
        fields.append(f"its rate limit (live: {live_words})")
    if code.description != live_rule.description:
        fields.append(f"its description (live: {live_rule.description!r})")
    return fields


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _rate_limits_by_range(rules: Iterable[Rule]) -> dict:
    """Range -> the rate limit of the first enforced rule that lets it through, when it has one."""
    limits: dict = {}
    seen: set = set()
    for rule in sorted(rules, key=lambda rule: rule.priority):
        if _lets_through(rule) and not rule.preview:
            for network in _networks(rule):
                if network not in seen:
                    seen.add(network)
                    if rule.rate_limit is not None:
                        limits[network] = rule.rate_limit
    return limits


def _rate_limit_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Ranges rate-limited by both, but with another threshold, interval, key or action: a live
    throttle of 1,000,000 requests a minute is no throttle at the code's 600."""
    want, have = _rate_limits_by_range(expected), _rate_limits_by_range(actual)
    changed: dict = {}
    for network in want.keys() & have.keys():
        if want[network] != have[network]:
            changed.setdefault((have[network], want[network]), set()).add(network)
    differences = []
    for (live_limit, code_limit), networks in sorted(changed.items(), key=lambda item: _named(item[1])):
        names = _named(networks)
        differences.append(
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} rate-limited at {live_limit.words()} "
            f"on the live policy; the code sets {code_limit.words()}"
        )
    return differences


def _is_waf(rule: Rule) -> bool:
    return rule.expression is not None and rule.action not in ALLOWING_ACTIONS


def _order_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Allow and throttle rules that come before a WAF rule: requests from their ranges are let
    through before the WAF inspects them. The code puts every WAF rule first."""
    code_waf = {rule.expression for rule in expected if _is_waf(rule)}
    live_waf = [rule for rule in actual if _is_waf(rule) and rule.expression in code_waf and not rule.preview]
    differences = []
    for rule in actual:
        if not _lets_through(rule) or rule.preview:
            continue
        skipped = [waf for waf in live_waf if waf.priority > rule.priority]
        if skipped:
            ranges = ", ".join(_named(set(_networks(rule))))
            differences.append(
                f"rule {rule.priority} ({rule.action}: {rule.description or 'no description'}) lets {ranges} "
                f"through before the WAF rule{'s' if len(skipped) > 1 else ''} "
                f"{', '.join(str(waf.priority) for waf in skipped)}, so their requests are never inspected by "
                f"{'them' if len(skipped) > 1 else 'it'}; the code puts every WAF rule first"
            )
    return differences


def _description_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """The allow, throttle and default rules' descriptions, which the code sets too; the other
    rules' are compared with their other fields."""
    want = {rule.priority: rule for rule in expected if _lets_through(rule) or rule.priority == DEFAULT_RULE_PRIORITY}
    differences = []
    for rule in actual:
        code = want.get(rule.priority)
        if code is not None and code.action == rule.action and code.description != rule.description:
            differences.append(
                f"rule {rule.priority}'s description is {rule.description!r} on the live policy; "
                f"the code's is {code.description!r}"
            )
    return differences
