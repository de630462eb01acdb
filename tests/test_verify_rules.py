"""`make verify` compares every field the code sets on each rule of the policy, and the rules'
order: rate limits (threshold, interval, key, actions), descriptions, expressions, and allow rules
moved ahead of the WAF. The real google-cloud-compute client against the local Compute API of
tests/test_live.py."""

import dataclasses

import pytest

from secure_endpoint.armor import RateLimit, Rule
from secure_endpoint.plan import THROTTLE_PRIORITY_START, WAF_PRIORITY_START, plan_rules
from tests.test_live import compute, env, policy_json, run  # noqa: F401  (compute and env are fixtures)

THROTTLE = {"RATE_LIMIT_PER_MINUTE": "600"}


def verify(factory, capsys) -> tuple[int, str]:
    code = run("verify", factory)
    return code, capsys.readouterr().out


def changed(rules: list[Rule], at: int, **fields) -> list[Rule]:
    """The rules with the one at priority `at` changed."""
    return [dataclasses.replace(rule, **fields) if rule.priority == at else rule for rule in rules]


def limit_of(rules: list[Rule], priority: int) -> RateLimit:
    (rule,) = [rule for rule in rules if rule.priority == priority]
    return rule.rate_limit


@pytest.mark.parametrize(
    "field, value, live_words",
    [
        ("count", 1_000_000, "1,000,000 requests per 60 s for each IP key, then deny(429) (below it: allow)"),
        ("interval_sec", 10, "600 requests per 10 s for each IP key"),
        ("enforce_on_key", "ALL", "600 requests per 60 s for each ALL key"),
        ("exceed_action", "deny(403)", "then deny(403)"),
    ],
    ids=["threshold", "interval", "key", "exceed action"],
)  # fmt: skip
def test_a_changed_throttle_is_drift(env, compute, capsys, field, value, live_words):
    code_rules = plan_rules(env(**THROTTLE))
    limit = dataclasses.replace(limit_of(code_rules, THROTTLE_PRIORITY_START), **{field: value})
    live = changed(code_rules, THROTTLE_PRIORITY_START, rate_limit=limit)

    code, out = verify(compute(policy=policy_json(live)), capsys)

    assert code == 1
    assert "203.0.113.4/32 is rate-limited at " in out and live_words in out
    assert "the code sets 600 requests per 60 s for each IP key, then deny(429) (below it: allow)" in out
    assert "differs from the code in 1 ways" in out


def test_the_codes_throttle_unchanged_is_in_sync(env, compute, capsys):
    code, out = verify(compute(policy=policy_json(plan_rules(env(**THROTTLE)))), capsys)

    assert code == 0, out


def test_an_allow_rule_moved_ahead_of_the_waf_is_drift(env, compute, capsys):
    live = changed(plan_rules(env()), 1000, priority=50)

    code, out = verify(compute(policy=policy_json(live)), capsys)

    assert code == 1
    assert ("rule 50 (allow: ALLOWED_IP_RANGES part 1 of 1) lets 203.0.113.4/32 through before the WAF rules 100, 110, 120, "
            "so their requests are never inspected by them; the code puts every WAF rule first") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


def test_a_waf_rule_moved_behind_the_allow_rules_is_drift(env, compute, capsys):
    live = changed(plan_rules(env()), WAF_PRIORITY_START + 10, priority=1500)

    code, out = verify(compute(policy=policy_json(live)), capsys)

    assert code == 1
    assert "lets 203.0.113.4/32 through before the WAF rule 1500, so their requests are never inspected by it" in out
    assert "rule 110 (WAF part 2 of 3: method, scanner, protocol, session) is in the code but not live" in out


def test_a_waf_rule_with_a_call_dropped_is_drift_naming_the_field(env, compute, capsys):
    rules = plan_rules(env())
    (first,) = [rule for rule in rules if rule.priority == WAF_PRIORITY_START]
    shorter = first.expression.rsplit(" || ", 1)[0]
    live = changed(rules, WAF_PRIORITY_START, expression=shorter)

    code, out = verify(compute(policy=policy_json(live)), capsys)

    assert code == 1
    assert f"rule 100 ({first.description}) differs from the code in its expression (live: {shorter!r})" in out
    assert "differs from the code in 1 ways" in out


@pytest.mark.parametrize("priority", [1000, 2147483647], ids=["allow rule", "default rule"])
def test_a_changed_description_is_drift(env, compute, capsys, priority):
    live = changed(plan_rules(env()), priority, description="edited in the console")

    code, out = verify(compute(policy=policy_json(live)), capsys)

    assert code == 1
    assert f"rule {priority}'s description is 'edited in the console' on the live policy; the code's is " in out
    assert "differs from the code in 1 ways" in out


@pytest.mark.parametrize("parsing", ["DISABLED", "STANDARD_WITH_GRAPHQL", None], ids=["disabled", "graphql", "absent"])
def test_json_parsing_other_than_the_codes_is_drift(env, compute, capsys, parsing):
    policy = policy_json(plan_rules(env()))
    policy["advancedOptionsConfig"] = {"logLevel": "NORMAL"} | ({"jsonParsing": parsing} if parsing else {})

    code, out = verify(compute(policy=policy), capsys)

    assert code == 1
    assert f"the policy's JSON parsing is {parsing or 'DISABLED'}" in out and "; the code sets STANDARD" in out
    assert "differs from the code in 1 ways" in out
