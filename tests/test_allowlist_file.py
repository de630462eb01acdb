"""ALLOWLIST_FILE: entries with owners, reasons and expiry; refusals, warnings, rule descriptions."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import allowlist_ops
import ops
import pytest
from secure_endpoint.allowlist_file import (
    DESCRIPTION_MAX,
    expiry_warnings,
    load_allowlist_file,
    rule_description,
)
from secure_endpoint.plan import plan_rules
from secure_endpoint.settings import EndpointSettings, SettingsError
from secure_endpoint.special_ranges import DOCUMENTATION
from secure_endpoint.synthesized import record_settings, stack_file

from tests.helpers import ROOT

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
BASE = {"PROJECT_ID": "p", "MODEL_URI": "gs://demo-models/model.onnx"}


def entry(range_, owner="payments team", reason="nightly scoring", **extra) -> str:
    lines = ["[[entry]]", f"range = {json.dumps(range_)}"]
    if owner is not None:
        lines.append(f"owner = {json.dumps(owner)}")
    if reason is not None:
        lines.append(f"reason = {json.dumps(reason)}")
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def allowlist(tmp_path):
    def write(*entries: str):
        path = tmp_path / "allowlist.toml"
        path.write_text("\n".join(entries))
        return path

    return write


def settings(path, now=NOW, **extra) -> EndpointSettings:
    return EndpointSettings.from_env({**BASE, "ALLOWLIST_FILE": str(path), **extra}, now=now)


def refusal(path, now=NOW, **extra) -> str:
    with pytest.raises(SettingsError) as caught:
        settings(path, now, **extra)
    return str(caught.value)


def test_entries_become_the_allowed_ranges_and_keep_their_owners(allowlist):
    path = allowlist(
        entry("203.0.113.0/25", owner="alice", expires="2027-06-30"),
        entry("203.0.113.128/25", owner="bob", reason="partner API"),
        entry("2001:db8::/48", owner="carol"),
    )
    read = settings(path, IPV6="true")

    assert [str(n) for n in read.allowed_ranges] == ["203.0.113.0/24", "2001:db8::/48"]
    assert [(str(e.network), e.owner) for e in read.allowlist_entries] == [
        ("203.0.113.0/25", "alice"), ("203.0.113.128/25", "bob"), ("2001:db8::/48", "carol"),
    ]  # fmt: skip
    assert read.allowlist_entries[0].expires == datetime(2027, 6, 30, tzinfo=UTC)


def test_folding_two_owners_ranges_names_both_in_the_rule(allowlist):
    path = allowlist(entry("203.0.113.0/25", owner="alice"), entry("203.0.113.128/25", owner="bob"))

    (allow,) = [rule for rule in plan_rules(settings(path)) if rule.action == "allow"]

    assert allow.src_ip_ranges == ("203.0.113.0/24",)
    assert allow.description == "allowlist 1/1: alice, bob"


def test_allowed_ip_ranges_keeps_its_rule_descriptions():
    read = EndpointSettings.from_env({**BASE, "ALLOWED_IP_RANGES": "203.0.113.4"})
    assert [r.description for r in plan_rules(read) if r.action == "allow"] == ["ALLOWED_IP_RANGES part 1 of 1"]


@pytest.mark.parametrize("shape", ["date", "datetime", "local datetime"])
def test_an_expired_entry_is_refused_naming_it_its_owner_and_the_date(allowlist, shape):
    expires = {"date": "2027-02-28", "datetime": "2027-03-01T11:00:00Z", "local datetime": "2027-03-01T12:00:00"}[shape]
    path = allowlist(entry("198.51.100.0/24", owner="demo team", expires=expires), entry("203.0.113.0/24"))

    message = refusal(path)

    assert message.startswith(f"ALLOWLIST_FILE: {path}: 1 expired entry: entry 1 (198.51.100.0/24, owner 'demo team')")
    assert f"expired on {expires[:10]}" in message


def test_an_entry_is_admitted_until_its_expiry_date_begins(allowlist):
    path = allowlist(entry("198.51.100.0/24", expires="2027-03-02"))
    assert settings(path, now=datetime(2027, 3, 1, 23, 59, tzinfo=UTC)).allowed_ranges
    assert "expired on 2027-03-02" in refusal(path, now=datetime(2027, 3, 2, 0, 0, tzinfo=UTC))


def test_destroy_is_never_blocked_by_an_expired_entry(allowlist):
    path = allowlist(entry("198.51.100.0/24", expires="2020-01-01"))
    read = settings(path, STACK_COMMAND="destroy")
    assert [str(n) for n in read.allowed_ranges] == ["198.51.100.0/24"]


def test_the_settings_check_refuses_an_expired_entry_for_deploy_but_not_for_destroy(allowlist):
    path = allowlist(entry("198.51.100.0/24", owner="demo team", expires="2020-01-01"))
    env = {"PATH": "/usr/bin:/bin", **BASE, "ALLOWLIST_FILE": str(path)}
    command = [sys.executable, "cdktf/main.py", "--check", "secure-inference"]

    deploy = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    destroy = subprocess.run(command, cwd=ROOT, env={**env, "STACK_COMMAND": "destroy"}, capture_output=True, text=True)

    assert deploy.returncode == 2 and "owner 'demo team') expired on 2020-01-01" in deploy.stderr
    assert destroy.returncode == 0, destroy.stderr


def test_entries_expiring_within_14_days_are_warned_about(allowlist, capsys):
    path = allowlist(
        entry("198.51.100.0/24", owner="soon", reason="pilot", expires="2027-03-10"),
        entry("203.0.113.0/24", owner="later", expires="2027-03-16"),
        entry("192.0.2.0/24", owner="never"),
    )
    entries = load_allowlist_file(path, now=NOW).entries

    assert expiry_warnings(entries, NOW) == [
        "warning: ALLOWLIST_FILE entry 1 (198.51.100.0/24, owner 'soon') expires in 9 days (2027-03-10); "
        "its reason: pilot"
    ]
    assert len(expiry_warnings(entries, NOW + timedelta(days=2))) == 2

    assert allowlist_ops.warnings({"ALLOWLIST_FILE": str(path)}, now=NOW) == 0
    assert "entry 1 (198.51.100.0/24, owner 'soon') expires in 9 days" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, words",
    [
        (entry("203.0.113.0/24", owner=None), "entry 1: expected owner: every entry says whose it is and why"),
        (entry("203.0.113.0/24", reason=None), "entry 1: expected reason: every entry says whose it is and why"),
        (entry("203.0.113.0/24", owner="  "), "entry 1: expected owner: who to ask about this range"),
        (entry("203.0.113.0/24", owner="a\nb"), "expected owner on one line of printable text"),
        (entry("203.0.113.0/24", expires='"2027-03-31"'),
         "entry 1 (203.0.113.0/24): expected expires as a TOML date, written without quotes "
         "(expires = 2027-03-31), got the string '2027-03-31'; remove the quotes"),
        (entry("203.0.113.0/24", expires="20270331"), "expected expires as a TOML date such as expires = 2027-03-31, got 20270331"),
        (entry("203.0.113.0/24", expire="2027-03-31"), "expected only the keys range, owner, reason, expires"),
        (entry("203.0.113.0/24, 198.51.100.0/24"), "expected one address or CIDR in range"),
        (entry("10.0.0.0/8"), "entry 1: range: expected public addresses, got '10.0.0.0/8'"),
        (entry("203.0.113.0/24", shared_cloud="true"), "expected shared_cloud_reason"),
        ("[[entry]\n", "expected TOML, got a syntax error"),
        ("ranges = 1\n", "expected only [[entry]] tables, got 'ranges'"),
        ("", "expected at least one [[entry]] table"),
    ],
    ids=["no owner", "no reason", "blank owner", "two-line owner", "quoted date", "number date",
         "misspelt key", "two ranges", "private range", "shared cloud without reason", "not toml",
         "other table", "empty"],
)  # fmt: skip
def test_a_bad_entry_is_refused_in_one_line(allowlist, text, words):
    message = refusal(allowlist(text))
    assert message.startswith("ALLOWLIST_FILE: ") and words in message and "\n" not in message


def test_a_missing_file_is_refused(tmp_path):
    assert "found no such file" in refusal(tmp_path / "nope.toml")


def test_setting_both_is_an_error(allowlist):
    message = refusal(allowlist(entry("203.0.113.0/24")), ALLOWED_IP_RANGES="198.51.100.4")
    assert "expected either ALLOWLIST_FILE or ALLOWED_IP_RANGES, got both" in message


def test_the_whole_file_is_judged_as_one_list(allowlist):
    path = allowlist(*[entry(f"{a}.0.0.0/9", owner=f"o{a}") for a in (1, 2, 3)])
    assert "ALLOWLIST_FILE: " in refusal(path) and "expected at most 16,777,216 IPv4 addresses" in refusal(path)


@pytest.mark.parametrize("count", [1, 2, 5, 40])
def test_rule_descriptions_name_owners_within_cloud_armors_64_characters(count):
    owners = [f"team number {i} <team{i}@example.com>" for i in range(count)]
    text = rule_description(owners, 2, 12)
    assert len(text) <= DESCRIPTION_MAX and text.startswith("allowlist 3/12: team number 0")
    if count > 1:
        assert text.endswith(" more")


def test_synthesized_rules_carry_owners_as_literal_text(allowlist, synth):
    path = allowlist(entry("203.0.113.0/24", owner="${file(\"/etc/passwd\")} %{if true}x%{endif}"))
    rules = synth(ALLOWED_IP_RANGES="", ALLOWLIST_FILE=str(path)).policy_rules()
    (allow,) = [rule for rule in rules if rule["action"] == "allow"]
    assert allow["description"] == 'allowlist 1/1: $${file("/etc/passwd")} %%{if true}x%%{endif}'


def test_check_ip_prints_the_owner_and_reason_of_an_allowed_address(allowlist, synth, tmp_path, capsys):
    path = allowlist(
        entry("203.0.113.0/25", owner="alice", reason="nightly batch", expires="2099-01-01"),
        entry("203.0.113.128/25", owner="bob", reason="partner API"),
    )
    env = {"ALLOWED_IP_RANGES": "", "ALLOWLIST_FILE": str(path)}
    out = tmp_path / "cdktf.out"
    stack_file(out).parent.mkdir(parents=True)
    stack_file(out).write_text(json.dumps(synth(**env).json))
    record_settings(out, settings(path))

    assert ops.main(["--out", str(out), "check-ip", "203.0.113.200", "198.51.100.1"]) == 1

    printed = capsys.readouterr().out
    assert "203.0.113.200  allow      rule 1000 (allowlist 1/1: alice, bob)" in printed
    assert "entry 203.0.113.128/25: owner bob; reason: partner API; expires never" in printed
    assert "owner alice" not in printed


def test_make_checks_expiry_for_deploy_and_not_for_destroy(allowlist):
    path = allowlist(entry("198.51.100.0/24", owner="demo team", expires="2020-01-01"))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "ALLOWED_IP_RANGES")}
    env.update(BASE, ALLOWLIST_FILE=str(path))

    def make(target):
        return subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, env=env, capture_output=True, text=True)

    deploy, destroy = make("settings-secure-inference"), make("settings-destroy")

    assert deploy.returncode != 0 and "owner 'demo team') expired on 2020-01-01" in deploy.stderr
    assert destroy.returncode == 0, destroy.stderr


def test_the_example_file_is_a_valid_allowlist():
    read = settings(ROOT / "allowlist.example.toml", IPV6="true")
    assert [e.owner.split(" ")[0] for e in read.allowlist_entries] == ["data", "Ana", "partner"]
    assert all(any(n.version == d.version and n.subnet_of(d) for d in DOCUMENTATION) for n in read.allowed_ranges)
    assert len(read.allowed_ranges) == 3

