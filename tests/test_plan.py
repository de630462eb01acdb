"""The Cloud Armor rules the code plans: the WAF folded into as few rules as an expression allows,
throttle rules in a band of their own. The synthesized policy follows the plan (tests/test_infra.py)."""

import re

import pytest

from secure_endpoint.allowlist import MAX_ALLOW_RULES
from secure_endpoint.plan import (
    ALLOW_PRIORITY_START,
    PRIORITY_STEP,
    THROTTLE_PRIORITY_START,
    WAF_CALLS_PER_RULE,
    WAF_PRIORITY_START,
    plan_rules,
    waf_calls,
)
from secure_endpoint.settings import EndpointSettings
from tests.infra import BASE_ENV

CALL = re.compile(r"evaluatePreconfigured(?:Waf|Expr)\('([a-z0-9-]+)'[^)]*\)")


def settings(**extra) -> EndpointSettings:
    return EndpointSettings.from_env({**BASE_ENV, **extra})


def waf_rules(rules):
    return [rule for rule in rules if rule.expression is not None]


def test_the_ten_waf_sets_take_three_rules_of_at_most_five_calls_joined_by_or():
    rules = waf_rules(plan_rules(settings()))

    assert len(waf_calls()) == 10
    assert [rule.priority for rule in rules] == [WAF_PRIORITY_START + i * PRIORITY_STEP for i in range(3)]
    for rule in rules:
        calls = rule.expression.split(" || ")
        assert 1 <= len(calls) <= WAF_CALLS_PER_RULE == 5
        assert all(CALL.fullmatch(call) for call in calls)
        assert rule.action == "deny(403)" and len(rule.description) <= 64
    folded = [name for rule in rules for name in CALL.findall(rule.expression)]
    assert folded == [name for name, _ in waf_calls()]


def test_the_cve_rule_stands_alone_as_policy_scanners_look_for_it():
    """checkov's CKV_GCP_73 passes only on a rule whose expression is exactly this call."""
    (cve,) = [rule for rule in waf_rules(plan_rules(settings())) if "cve-canary" in rule.expression]

    assert cve.expression == "evaluatePreconfiguredExpr('cve-canary')" and not cve.preview


def test_waf_rules_false_plans_no_expression_rule():
    assert waf_rules(plan_rules(settings(WAF_RULES="false"))) == []


@pytest.mark.parametrize(
    "rate, action, priorities",
    [("", "allow", [1000, 1010]), ("600", "throttle", [2000, 2010])],
    ids=["allow", "throttle"],
)  # fmt: skip
def test_allow_and_throttle_rules_have_priority_bands_of_their_own(rate, action, priorities):
    """A switch between the two is then a remove and an add, never a patch of one rule's action."""
    ranges = " ".join(f"198.51.100.{2 * i + 1}" for i in range(11))

    rules = plan_rules(settings(ALLOWED_IP_RANGES=ranges, RATE_LIMIT_PER_MINUTE=rate))
    allowing = [r for r in rules if r.expression is None and r.src_ip_ranges != ("*",)]

    assert [(r.action, r.priority) for r in allowing] == [(action, p) for p in priorities]
    assert all((r.rate_limit is not None) is (action == "throttle") for r in allowing)


def test_the_bands_cannot_meet_whatever_the_number_of_rules():
    assert WAF_PRIORITY_START + 3 * PRIORITY_STEP <= ALLOW_PRIORITY_START
    assert ALLOW_PRIORITY_START + MAX_ALLOW_RULES * PRIORITY_STEP <= THROTTLE_PRIORITY_START


def test_a_throttle_rule_carries_every_rate_limit_field_the_code_sets():
    (throttle,) = [r for r in plan_rules(settings(RATE_LIMIT_PER_MINUTE="600")) if r.action == "throttle"]

    limit = throttle.rate_limit
    assert (limit.count, limit.interval_sec, limit.conform_action, limit.exceed_action, limit.enforce_on_key) == (
        600, 60, "allow", "deny(429)", "IP",
    )  # fmt: skip
