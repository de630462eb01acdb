"""`make check-ip`: Cloud Armor's decision for an address, from the synthesized policy."""

import ipaddress
import json
import os
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ops
from secure_endpoint.allowlist import AllowlistError, parse_allowlist
from secure_endpoint.armor import PolicyError, Rule, check_policy, decide, rules_from_terraform
from secure_endpoint.settings import EndpointSettings
from secure_endpoint.synthesized import SETTINGS_FILE, SOURCES, record_settings, staleness, stack_file
from tests.helpers import ROOT
from tests.infra import BASE_ENV
from tests.test_allowlist import ranges

SHAPES = {
    "1 range": ["203.0.113.4"],
    "11 ranges, IPv6 mixed": ranges(11, ipv6_every=3),
    "25 ranges, IPv6 mixed": ranges(25, ipv6_every=4),
    "IPv6 only": ["2001:db8::/48", "2001:db8:ffff::1"],
}

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


def near(networks):
    """Addresses at and around each range's edges, where off-by-one mistakes live."""
    for network in networks:
        first, last = int(network.network_address), int(network.broadcast_address)
        top = 2**network.max_prefixlen - 1
        for value in (first - 1, first, first + 1, last - 1, last, last + 1):
            if 0 <= value <= top:
                yield ipaddress.ip_address(value) if network.version == 4 else ipaddress.IPv6Address(value)


@pytest.fixture(scope="module", params=list(SHAPES), ids=list(SHAPES))
def shape(request, synth):
    given_ranges = SHAPES[request.param]
    ipv6 = "true" if any(":" in r for r in given_ranges) else ""
    stack = synth(ALLOWED_IP_RANGES=" ".join(given_ranges), **({"IPV6": ipv6} if ipv6 else {}))
    networks = [ipaddress.ip_network(r, strict=False) for r in given_ranges]
    return rules_from_terraform(stack.one("google_compute_security_policy")), networks


def inside(address, networks) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(address=st.one_of(ipv4, ipv6))
def test_decision_is_allow_exactly_inside_the_allowlist(shape, address):
    rules, networks = shape

    decision = decide(rules, str(address))

    assert decision.allowed == inside(address, networks)
    assert decision.action == ("allow" if inside(address, networks) else "deny(403)")


def test_range_edges_hit_exactly(shape):
    rules, networks = shape

    for address in near(networks):
        assert decide(rules, str(address)).allowed == inside(address, networks), address


def test_the_default_rule_decides_for_strangers(shape):
    rules, _ = shape

    decision = decide(rules, "192.0.2.1")

    assert decision.rule.priority == 2147483647
    assert decision.rule.description == "default: deny everyone else"


def test_expression_rules_are_reported_not_guessed(shape):
    rules, _ = shape

    decision = decide(rules, "203.0.113.4")

    assert len(decision.not_evaluated) == 3  # the ten WAF sets: five to a rule, the CVE rule alone
    assert all(r.expression for r in decision.not_evaluated)


def test_first_match_by_priority_wins_and_preview_rules_are_not_enforced():
    rules = [
        Rule(priority=2147483647, action="deny(403)", src_ip_ranges=("*",)),
        Rule(priority=500, action="deny(403)", description="trial", src_ip_ranges=("10.0.0.0/8",), preview=True),
        Rule(priority=1000, action="allow", src_ip_ranges=("10.1.0.0/16",)),
        Rule(priority=900, action="deny(404)", src_ip_ranges=("10.1.2.0/24",)),
    ]

    assert decide(rules, "10.1.2.3").action == "deny(404)"
    allowed = decide(rules, "10.1.3.4")
    assert allowed.action == "allow"
    assert [r.description for r in allowed.previews] == ["trial"]
    assert decide(rules, "10.9.9.9").rule.priority == 2147483647


def test_an_address_is_judged_in_its_own_family():
    rules = [
        Rule(priority=1000, action="allow", src_ip_ranges=("203.0.113.0/24",)),
        Rule(priority=1010, action="allow", src_ip_ranges=("2001:db8::/32",)),
        Rule(priority=2147483647, action="deny(403)", src_ip_ranges=("*",)),
    ]

    mapped = decide(rules, "::ffff:203.0.113.4")
    assert not mapped.allowed and mapped.rule.priority == 2147483647
    assert mapped.ipv4_mapped == "203.0.113.4"
    assert decide(rules, "203.0.113.4").allowed and decide(rules, "203.0.113.4").ipv4_mapped is None
    assert decide(rules, "2001:db8::cb00:7104").allowed
    assert not decide(rules, "::203.0.113.4").allowed


def test_a_preview_rule_is_skipped_even_when_it_would_allow():
    rules = [
        Rule(priority=900, action="allow", description="trial", src_ip_ranges=("198.51.100.0/24",), preview=True),
        Rule(priority=2147483647, action="deny(403)", src_ip_ranges=("*",)),
    ]

    decision = decide(rules, "198.51.100.7")

    assert decision.action == "deny(403)"
    assert [r.description for r in decision.previews] == ["trial"]


@pytest.mark.parametrize("action", ["allow", "throttle", "rate_based_ban"])
def test_rate_based_rules_let_their_addresses_through(action):
    """Throttle and rate-based ban both let requests through up to their threshold."""
    rules = [
        Rule(priority=900, action=action, description="partner", src_ip_ranges=("198.51.100.0/24",)),
        Rule(priority=2147483647, action="deny(403)", src_ip_ranges=("*",)),
    ]

    assert decide(rules, "198.51.100.7").allowed


@pytest.mark.parametrize(
    "rules, words",
    [
        ([Rule(priority=2147483647, action="deny(403)", src_ip_ranges=("*",), preview=True)], "default rule (priority 2147483647) is in preview mode"),
        ([Rule(priority=1000, action="allow", description="office", src_ip_ranges=("203.0.113.0/24",)),
          Rule(priority=1000, action="deny(403)", description="block", src_ip_ranges=("198.51.100.0/24",)),
          Rule(priority=2147483647, action="deny(403)", src_ip_ranges=("*",))], "2 rules share priority 1000 ('office', 'block')"),
    ],
    ids=["default rule in preview", "duplicate priorities"],
)  # fmt: skip
def test_a_policy_that_cannot_be_judged_is_an_error(rules, words):
    with pytest.raises(PolicyError, match=re.escape(words)):
        check_policy(rules)


def test_the_synthesized_policy_can_be_judged(shape):
    rules, _ = shape

    check_policy(rules)


def test_an_address_that_is_not_one_is_refused():
    with pytest.raises(ValueError):
        decide([], "203.0.113")


@pytest.fixture
def synthesized_out(tmp_path, synth, monkeypatch):
    """A cdktf.out as `make synth` leaves it, for the settings in the environment."""
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    path = stack_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(synth().json))
    record_settings(tmp_path, EndpointSettings.from_env(BASE_ENV))
    return tmp_path


def test_cli_exits_0_when_every_address_is_allowed(synthesized_out, capsys):
    assert ops.main(["--out", str(synthesized_out), "check-ip", "203.0.113.4"]) == 0

    out = capsys.readouterr().out
    assert "203.0.113.4  allow      rule 1000 (ALLOWED_IP_RANGES part 1 of 1)" in out
    assert "not evaluated: 3 expression rules at priorities 100-120" in out


def test_cli_exits_1_when_any_address_is_denied(synthesized_out, capsys):
    assert ops.main(["--out", str(synthesized_out), "check-ip", "203.0.113.4,198.51.100.7"]) == 1

    out = capsys.readouterr().out
    assert "198.51.100.7  deny(403)  rule 2147483647 (default: deny everyone else)" in out


@pytest.mark.parametrize("addresses, words", [([], "expected at least one address"), (["203.0.113.4", "nope"], "got 'nope'")])
def test_cli_exits_2_on_bad_input(synthesized_out, capsys, addresses, words):
    assert ops.main(["--out", str(synthesized_out), "check-ip", *addresses]) == 2

    assert words in capsys.readouterr().err


def test_cli_exits_2_without_settings_or_policy(tmp_path, capsys):
    assert ops.main(["--out", str(tmp_path / "none"), "check-ip", "203.0.113.4"]) == 2

    err = capsys.readouterr().err
    assert "PROJECT_ID: required" in err and f"{tmp_path / 'none'} does not exist" in err
    assert err.count("\n") == 1


def test_cli_notes_an_ipv4_mapped_address(synthesized_out, capsys):
    assert ops.main(["--out", str(synthesized_out), "check-ip", "::ffff:203.0.113.4"]) == 1

    out = capsys.readouterr().out
    assert "deny(403)  rule 2147483647" in out
    assert "an IPv4-mapped IPv6 address, judged as IPv6; a client calling over IPv4 arrives as 203.0.113.4" in out


def edit_stack(out, change) -> None:
    path = stack_file(out)
    stack = json.loads(path.read_text())
    change(stack)
    path.write_text(json.dumps(stack))


def default_in_preview(stack):
    (policy,) = stack["resource"]["google_compute_security_policy"].values()
    policy["rule"][-1]["preview"] = True


def duplicate_priority(stack):
    (policy,) = stack["resource"]["google_compute_security_policy"].values()
    policy["rule"][1]["priority"] = policy["rule"][0]["priority"]


@pytest.mark.parametrize(
    "change, words",
    [(default_in_preview, "the default rule (priority 2147483647) is in preview mode"), (duplicate_priority, "rules share priority")],
)  # fmt: skip
def test_cli_exits_2_on_a_policy_that_cannot_be_judged(synthesized_out, capsys, change, words):
    edit_stack(synthesized_out, change)

    assert ops.main(["--out", str(synthesized_out), "check-ip", "203.0.113.4"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("error: the synthesized policy cannot be judged: ") and words in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda out: stack_file(out).write_text("{not json"), "cdk.tf.json cannot be read"),
        (lambda out: stack_file(out).write_text('{"resource": {}}'), "expected 1 Cloud Armor policy"),
        (lambda out: edit_stack(out, lambda s: s["resource"]["google_compute_security_policy"].update(
            {k: {"rule": [{"action": "allow"}]} for k in s["resource"]["google_compute_security_policy"]})), "is not one cdktf wrote"),
        (lambda out: (out / SETTINGS_FILE).write_text("[1, 2"), "settings.json cannot be read"),
    ],
    ids=["stack not json", "no policy", "rule without priority", "settings not json"],
)  # fmt: skip
def test_cli_exits_2_in_one_line_on_a_corrupt_cdktf_out(synthesized_out, capsys, damage, words):
    damage(synthesized_out)

    assert ops.main(["--out", str(synthesized_out), "check-ip", "203.0.113.4"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert words in err and "run `make synth` again" in err


def test_synthesized_output_is_stale_when_settings_change(synthesized_out):
    assert staleness(synthesized_out, EndpointSettings.from_env(BASE_ENV)) is None

    changed = EndpointSettings.from_env({**BASE_ENV, "ALLOWED_IP_RANGES": "203.0.113.5"})

    assert staleness(synthesized_out, changed) == "the settings changed since the last synth"
    assert staleness(synthesized_out / "elsewhere", changed).startswith("nothing synthesized")


def test_cli_refuses_a_zone_id_as_the_allowlist_does(synthesized_out, capsys):
    with pytest.raises(AllowlistError) as refused:
        parse_allowlist("2001:db8::5%eth0")

    assert ops.main(["--out", str(synthesized_out), "check-ip", "2001:db8::5%eth0"]) == 2

    captured = capsys.readouterr()
    assert captured.err == f"error: {refused.value}\n"
    assert "allow" not in captured.out


def make_check_ip(out, *addresses: str) -> subprocess.CompletedProcess:
    """The real `make check-ip`; the install stamps are taken as made (nothing installs)."""
    return subprocess.run(
        ["make", "-o", ".venv/.infra-deps", "-o", "node_modules/.installed", "check-ip",
         f"IP={' '.join(addresses)}", f"CDKTF_OUT={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **BASE_ENV, "MAKEFLAGS": "", "MAKELEVEL": ""},
    )  # fmt: skip


def test_make_check_ip_answers_a_denied_address_without_an_error(synthesized_out):
    denied = make_check_ip(synthesized_out, "198.51.100.7")
    allowed = make_check_ip(synthesized_out, "203.0.113.4")

    assert (denied.returncode, allowed.returncode) == (0, 0)
    assert "198.51.100.7  deny(403)  rule 2147483647 (default: deny everyone else)" in denied.stdout
    assert "203.0.113.4  allow" in allowed.stdout
    for result in (denied, allowed):
        assert "Error" not in result.stdout + result.stderr and result.stderr == ""


def test_make_check_ip_stops_on_a_zone_id(synthesized_out):
    result = make_check_ip(synthesized_out, "2001:db8::5%eth0")

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "with a zone id" in errors[0]
    assert "allow" not in result.stdout


def test_check_ip_synthesizes_again_once_the_code_is_newer_than_its_output(synthesized_out, capsys):
    stack = stack_file(synthesized_out)
    newest_source = max(path.stat().st_mtime for path in SOURCES.parent.rglob("*.py"))
    # As if every source file had been edited after this synth.
    os.utime(stack, (newest_source - 60, newest_source - 60))
    assert staleness(synthesized_out, EndpointSettings.from_env(BASE_ENV)) == (
        "the infrastructure code changed since the last synth"
    )

    assert ops.main(["--out", str(synthesized_out), "check-ip", "203.0.113.4"]) == 0

    out = capsys.readouterr().out
    assert "synthesizing first: the infrastructure code changed since the last synth" in out
    assert stack.stat().st_mtime > newest_source
    assert "203.0.113.4  allow" in out


def test_check_ip_does_not_synthesize_when_nothing_changed(synthesized_out, capsys):
    stack = stack_file(synthesized_out)
    made = stack.stat().st_mtime_ns

    assert ops.main(["--out", str(synthesized_out), "check-ip", "203.0.113.4"]) == 0

    assert "synthesizing" not in capsys.readouterr().out
    assert stack.stat().st_mtime_ns == made


def test_the_operate_page_s_example_prints_what_it_shows(synthesized_out, capsys):
    page = (ROOT / "docs" / "operate.md").read_text()
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", page, re.S) if "make check-ip IP=" in b]
    assert "ALLOWED_IP_RANGES=" + BASE_ENV["ALLOWED_IP_RANGES"] in block  # the policy judged here
    runs = re.findall(r"^make check-ip IP=(\"[^\"]+\"|\S+)[^\n]*\n((?:(?!make )[^\n]*\n)+)", block, re.M)
    assert len(runs) == 2

    for addresses, printed in runs:
        ops.main(["--out", str(synthesized_out), "check-ip", *addresses.strip('"').split()])

        assert capsys.readouterr().out.splitlines() == printed.splitlines()
