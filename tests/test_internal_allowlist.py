"""The allowlist with EXPOSURE=internal: the addresses a client inside a VPC can have.

One test per class of range Google lets a subnet use, and per class that stays refused.
"""

import pytest
from secure_endpoint.allowlist import AllowlistError, parse_allowlist
from secure_endpoint.vpc_ranges import privately_used_public


def internal(raw: str) -> list[str]:
    return [str(network) for network in parse_allowlist(raw, internal=True)]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("10.128.0.5", id="rfc1918-10"),
        pytest.param("172.16.4.0/22", id="rfc1918-172"),
        pytest.param("192.168.10.0/24", id="rfc1918-192"),
        pytest.param("100.64.12.0/24", id="shared-address-space"),
        pytest.param("192.0.0.0/24", id="ietf-protocol-assignments"),
        pytest.param("198.18.0.0/15", id="benchmarking"),
        pytest.param("240.0.0.0/8", id="class-e"),
        pytest.param("192.0.2.0/24", id="documentation"),
    ],
)
def test_ranges_a_vpc_subnet_may_use_are_accepted_silently(raw):
    networks = parse_allowlist(raw, internal=True)
    assert len(networks) == 1 and privately_used_public(networks) == []


def test_a_privately_used_public_range_is_accepted_and_marked_for_a_warning():
    networks = parse_allowlist("11.0.0.0/16, 10.0.0.0/24", internal=True)
    assert [str(n) for n in privately_used_public(networks)] == ["11.0.0.0/16"]


def test_folding_and_host_bits_work_as_in_public_mode():
    assert internal("10.0.0.0/25, 10.0.0.128/25, 10.0.0.7") == ["10.0.0.0/24"]
    with pytest.raises(AllowlistError, match="did you mean 10.0.0.0/24"):
        internal("10.0.0.1/24")


@pytest.mark.parametrize(
    "raw, words",
    [
        pytest.param("127.0.0.1", "127.0.0.0/8 (Loopback", id="loopback"),
        pytest.param("169.254.169.254", "169.254.0.0/16 (Link Local", id="link-local"),
        pytest.param("224.0.0.0/24", "224.0.0.0/4 (Multicast", id="multicast"),
        pytest.param("0.0.0.0/8", "0.0.0.0/8 (This network", id="this-network"),
        pytest.param("255.255.255.255", "255.255.255.255/32 (Limited Broadcast", id="broadcast"),
        pytest.param("0.0.0.0/0", "which lets everyone in", id="everyone"),
        pytest.param("10.0.0.0/7", "no wider than /8", id="wider-than-a-slash-8"),
        pytest.param("240.0.0.0/7", "no wider than /8", id="class-e-wider-than-a-slash-8"),
        pytest.param(
            "10.0.0.0/8, 11.0.0.0/8", "no wider than /8 once folded", id="folds-past-the-width-cap"
        ),
        pytest.param(
            "10.0.0.0/8, 172.16.0.0/12",
            "at most 16,777,216 IPv4 addresses",
            id="past-the-union-cap",
        ),
        pytest.param("fd00::/64", "expected IPv4 addresses with EXPOSURE=internal", id="ipv6"),
    ],
)
def test_ranges_no_vpc_client_has_or_too_wide_are_refused(raw, words):
    with pytest.raises(AllowlistError) as raised:
        internal(raw)
    assert words in str(raised.value)


def test_public_mode_still_refuses_private_ranges():
    with pytest.raises(AllowlistError, match="expected public addresses"):
        parse_allowlist("10.0.0.0/24")
