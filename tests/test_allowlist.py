"""ALLOWED_IP_RANGES and the other infrastructure settings, checked before anything is synthesized."""

import ipaddress
import subprocess
import sys

import pytest

from secure_endpoint.allowlist import (
    MAX_ALLOW_RULES,
    MAX_RANGES_PER_RULE,
    AllowlistError,
    chunk_ranges,
    parse_allowlist,
)
from secure_endpoint.settings import DEFAULT_REGION, EndpointSettings, SettingsError
from tests.helpers import ROOT
from tests.infra import BASE_ENV


def ranges(count: int, ipv6_every: int = 0) -> list[str]:
    """`count` disjoint, non-adjacent documentation ranges; every `ipv6_every`-th one IPv6."""
    assert count <= 64, "198.51.100.0/24 holds 64 non-adjacent /31s"
    out = []
    for i in range(count):
        if ipv6_every and i % ipv6_every == 0:
            out.append(f"2001:db8:{i:x}::/48")
        else:
            out.append(f"198.51.100.{i * 4}/31")
    return out


def test_bare_addresses_become_single_host_ranges():
    assert [str(n) for n in parse_allowlist("203.0.113.4, 2001:db8::1")] == ["203.0.113.4/32", "2001:db8::1/128"]


@pytest.mark.parametrize("separator", [",", " ", ", ", "\n", " ,\t"])
def test_commas_and_spaces_both_separate(separator):
    assert len(parse_allowlist(separator.join(["203.0.113.4", "198.51.100.0/24"]))) == 2


def test_duplicates_and_contained_ranges_are_folded():
    folded = parse_allowlist(
        "198.51.100.0/24 198.51.100.128/25 198.51.100.7 198.51.100.0/24 2001:db8::/32 2001:db8:1::1"
    )

    assert [str(n) for n in folded] == ["198.51.100.0/24", "2001:db8::/32"]


@pytest.mark.parametrize(
    "raw, words",
    [
        ("", ["expected IPv4/IPv6 addresses or CIDRs", "got ''", "denies everyone"]),
        ("your ip address", ["placeholder 'your ip address'"]),
        ("203.0.113.4, example.com", ["got 'example.com'"]),
        ("203.0.113.300", ["got '203.0.113.300'"]),
        ("203.0.113.5/24", ["host bits set", "did you mean 203.0.113.0/24?"]),
        ("198.51.100.1/255.255.255.0", ["host bits set", "did you mean 198.51.100.0/24?"]),
        ("10.0.0.5/24", ["'10.0.0.5/24'", "Private-Use"]),
        ("2001:db8::1/32", ["did you mean 2001:db8::/32?"]),
        ("0.0.0.0/0", ["lets everyone in"]),
        ("203.0.113.4 ::/0", ["'::/0'", "lets everyone in"]),
    ],
)
def test_bad_allowlists_are_refused_saying_why(raw, words):
    with pytest.raises(AllowlistError) as raised:
        parse_allowlist(raw)

    for word in words:
        assert word in str(raised.value)


# Wide ranges cannot come from the documentation blocks: these are public space, and only ever refused
# or folded here.
FIFTY_ODD_SLASH_EIGHTS = [f"{first}.0.0.0/8" for first in range(1, 100, 2)]


@pytest.mark.parametrize(
    "raw, words",
    [
        ("0.0.0.0/1,128.0.0.0/1", ["'0.0.0.0/1'", "no wider than /8", "1/2 of all IPv4 addresses"]),
        ("128.0.0.0/1 0.0.0.0/1", ["'128.0.0.0/1'", "no wider than /8"]),
        ("::/1 8000::/1", ["'::/1'", "no wider than /16", "1/2 of all IPv6 addresses"]),
        ("2000::/3", ["'2000::/3'", "no wider than /16", "1/8 of all IPv6 addresses"]),
        ("12.0.0.0/8 13.0.0.0/8", ["once folded", "'12.0.0.0/8', '13.0.0.0/8'", "12.0.0.0/7"]),
        ("2400::/16, 2401::/16", ["once folded", "'2400::/16', '2401::/16'", "2400::/15"]),
        (" ".join(FIFTY_ODD_SLASH_EIGHTS), ["at most 16,777,216 IPv4 addresses", "got 838,860,800",
                                            "19.5% of the IPv4 internet", "'1.0.0.0/8', '3.0.0.0/8', '5.0.0.0/8' and 47 more"]),
        ("203.0.113.4 12.0.0.0/8", ["got 16,777,217", "'12.0.0.0/8', '203.0.113.4'"]),
        ("2400::/16 2001:db8::1", ["at most 2^112 IPv6 addresses", "'2400::/16', '2001:db8::1'"]),
    ],
)  # fmt: skip
def test_too_much_of_the_internet_is_refused_entry_by_entry_and_once_folded(raw, words):
    with pytest.raises(AllowlistError) as raised:
        parse_allowlist(raw)

    for word in words:
        assert word in str(raised.value)


def test_fifty_odd_slash_eights_never_fold_yet_are_refused_together():
    assert len(list(ipaddress.collapse_addresses(map(ipaddress.ip_network, FIFTY_ODD_SLASH_EIGHTS)))) == 50
    assert all(parse_allowlist(eight) for eight in FIFTY_ODD_SLASH_EIGHTS)

    with pytest.raises(AllowlistError, match="838,860,800"):
        parse_allowlist(",".join(FIFTY_ODD_SLASH_EIGHTS))


def test_ranges_that_fold_into_exactly_the_limit_pass():
    sixteens = " ".join(f"12.{second}.0.0/16" for second in range(256))
    assert [str(n) for n in parse_allowlist(sixteens)] == ["12.0.0.0/8"]
    assert [str(n) for n in parse_allowlist("2400::/17 2400:8000::/17")] == ["2400::/16"]


@pytest.mark.parametrize("raw", ["", "   ", " , ", ",,", "\n,\t,"])
def test_an_empty_allowlist_is_refused_as_one_that_denies_everyone(raw):
    with pytest.raises(AllowlistError) as raised:
        parse_allowlist(raw)

    assert f"got {raw!r}: an empty allowlist would make a policy that denies everyone" in str(raised.value)


@pytest.mark.parametrize("raw", ["203.0.113.4,,198.51.100.7", "203.0.113.4, ,198.51.100.7", "203.0.113.4 ,\n, 198.51.100.7"])
def test_an_empty_entry_between_two_is_refused_as_a_missing_one(raw):
    with pytest.raises(AllowlistError) as raised:
        parse_allowlist(raw)

    assert f"got an empty entry after '203.0.113.4' in {raw!r}" in str(raised.value)


@pytest.mark.parametrize("raw", ["203.0.113.4,", ",203.0.113.4", " 203.0.113.4 ,\n", "203.0.113.4,\n198.51.100.7,\n"])
def test_separators_before_the_first_entry_or_after_the_last_are_layout(raw):
    assert ipaddress.ip_network("203.0.113.4/32") in parse_allowlist(raw)


def spaced_ipv6_addresses(count: int) -> str:
    """`count` addresses of 2001:db8::/32 two apart, so that no two fold into one range."""
    return " ".join(f"2001:db8::{2 * i:x}" for i in range(count))


def test_more_ranges_than_the_allow_rules_hold_are_refused_naming_the_count():
    most = MAX_ALLOW_RULES * MAX_RANGES_PER_RULE
    assert len(chunk_ranges(parse_allowlist(spaced_ipv6_addresses(most)))) == MAX_ALLOW_RULES

    env = {**BASE_ENV, "IPV6": "true", "ALLOWED_IP_RANGES": spaced_ipv6_addresses(most + 1)}
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env(env)

    message = str(raised.value)
    assert message.startswith("ALLOWED_IP_RANGES: ")
    assert f"expected at most {most:,} ranges once folded ({MAX_ALLOW_RULES} Cloud Armor rules of {MAX_RANGES_PER_RULE})" in message
    assert f"got {most + 1:,}, which would need {MAX_ALLOW_RULES + 1} rules" in message


@pytest.mark.parametrize("count", [1, 10, 11, 25])
def test_chunks_hold_at_most_ten_ranges_and_lose_none(count):
    networks = parse_allowlist(" ".join(ranges(count, ipv6_every=4)))

    chunks = chunk_ranges(networks)

    assert len(chunks) == -(-count // MAX_RANGES_PER_RULE)
    assert all(1 <= len(chunk) <= MAX_RANGES_PER_RULE for chunk in chunks)
    assert sorted(r for chunk in chunks for r in chunk) == sorted(str(ipaddress.ip_network(r)) for r in ranges(count, 4))


def test_settings_defaults():
    settings = EndpointSettings.from_env(BASE_ENV)

    assert settings.region == DEFAULT_REGION
    assert settings.image == f"{DEFAULT_REGION}-docker.pkg.dev/p/inference-on-secure-cloud-run/inference:latest"
    assert settings.model_bucket == "demo-models"
    assert (settings.domain, settings.state_bucket, settings.deletion_protection) == (None, None, False)
    assert (settings.min_instances, settings.waf_rules, settings.rate_limit_per_minute) == (0, True, None)


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("PROJECT_ID", "", "PROJECT_ID: required"),
        ("PROJECT_ID", "My Project", "PROJECT_ID: expected a Google Cloud project id, got 'My Project'"),
        ("MODEL_URI", "", "MODEL_URI: required; expected the model's Cloud Storage URI, gs://bucket/object"),
        ("MODEL_URI", "artifacts/model.onnx", "got 'artifacts/model.onnx'"),
        ("MODEL_URI", "gs://bucket", "got 'gs://bucket'"),
        ("ALLOWED_IP_RANGES", "", "ALLOWED_IP_RANGES: required; expected the addresses or CIDRs allowed in"),
        ("ALLOWED_IP_RANGES", "your ip address", "ALLOWED_IP_RANGES: expected your own addresses"),
        ("ALLOWED_IP_RANGES", "203.0.113.4 192.168.1.10", "ALLOWED_IP_RANGES: expected public addresses, got '192.168.1.10'"),
        ("ALLOWED_IP_RANGES", "0.0.0.0/1,128.0.0.0/1", "ALLOWED_IP_RANGES: expected IPv4 ranges no wider than /8, got '0.0.0.0/1'"),
        ("REGION", "tokyo", "REGION: expected a region such as asia-northeast1, got 'tokyo'"),
        ("DOMAIN", "https://api.example.com", "DOMAIN: expected a domain name"),
        ("TF_STATE_BUCKET", "gs://state", "TF_STATE_BUCKET: expected a Cloud Storage bucket name, got 'gs://state'"),
        ("MAX_INSTANCES", "0", "MAX_INSTANCES: expected a whole number of at least 1, got '0'"),
        ("MIN_INSTANCES", "5", "MAX_INSTANCES: expected at least MIN_INSTANCES (5), got 3"),
        ("CONCURRENCY", "5000", "CONCURRENCY: expected a whole number from 1 to 1000, got '5000'"),
        ("DELETION_PROTECTION", "maybe", "DELETION_PROTECTION: expected true or false, got 'maybe'"),
        ("RATE_LIMIT_PER_MINUTE", "lots", "RATE_LIMIT_PER_MINUTE: expected a whole number"),
        ("RATE_LIMIT_PER_MINUTE", "1000001", "RATE_LIMIT_PER_MINUTE: expected a whole number from 0 to 1000000, got '1000001'"),
        ("MAX_INSTANCES", "\uff11\uff10", "MAX_INSTANCES: expected a whole number of at least 1, got '\uff11\uff10'"),
        ("MAX_INSTANCES", "1_000", "MAX_INSTANCES: expected a whole number of at least 1, got '1_000'"),
        ("CONCURRENCY", "+40", "CONCURRENCY: expected a whole number from 1 to 1000, got '+40'"),
    ],
)
def test_bad_setting_names_the_variable_and_value(name, value, words):
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, name: value})

    assert words in str(raised.value)


@pytest.mark.parametrize("value", ["your ip address", "0.0.0.0/1,128.0.0.0/1"])
def test_synth_with_a_bad_setting_fails_naming_it_and_writes_nothing(tmp_path, value):
    env = {"PATH": "/usr/bin:/bin", **BASE_ENV, "ALLOWED_IP_RANGES": value}

    result = subprocess.run(
        [sys.executable, str(ROOT / "cdktf" / "main.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stderr.startswith("error: ALLOWED_IP_RANGES:")
    assert repr(value.split(",")[0]) in result.stderr
    assert list(tmp_path.iterdir()) == []
