"""Only global unicast ranges pass the allowlist: the IANA table, row by row, and by hand."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secure_endpoint.allowlist import CHECK_IP_URL, AllowlistError, parse_allowlist
from secure_endpoint.special_ranges import DOCUMENTATION, GLOBAL_UNICAST, SPECIAL_RANGES, own_space


def refusal(raw: str) -> str:
    with pytest.raises(AllowlistError) as raised:
        parse_allowlist(raw)
    return str(raised.value)


def probe(row) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A single address that this row, and no more specific one, decides for."""
    return ipaddress.ip_network(own_space(row)[0].network_address)


@pytest.mark.parametrize("row", SPECIAL_RANGES, ids=[f"{row.network} {row.name}" for row in SPECIAL_RANGES])
def test_each_row_of_the_table_decides_for_its_own_addresses(row):
    address = probe(row)

    if row.admits:
        assert parse_allowlist(str(address)) == (address,)
        assert parse_allowlist(str(row.network)) == (row.network,)
    else:
        assert f"got '{address}', in {row.network} ({row.name}, {row.reference})" in refusal(str(address))
        refusal(str(row.network))


# Written from the registries and the kinds of mistake users make, not from the table: an entry here
# that the table misses is accepted, and fails.
REFUSED = [
    ("0.0.0.0/8", ["This network", "0.0.0.0/8"]),
    ("0.0.0.0", ["This host on this network"]),
    ("10.0.0.0/8", ["Private-Use", "RFC 1918", "a LAN address", CHECK_IP_URL]),
    ("10.20.30.40", ["Private-Use", "a LAN address", CHECK_IP_URL]),
    ("172.16.0.0/12", ["Private-Use", "a LAN address"]),
    ("172.31.255.255", ["Private-Use"]),
    ("192.168.1.10", ["192.168.0.0/16", "Private-Use", "a LAN address", CHECK_IP_URL]),
    ("100.64.0.0/10", ["Shared Address Space", "carrier-grade NAT", CHECK_IP_URL]),
    ("100.127.255.254", ["Shared Address Space", "carrier-grade NAT"]),
    ("127.0.0.1", ["Loopback", "a loopback address", CHECK_IP_URL]),
    ("169.254.169.254", ["Link Local", "a LAN address"]),
    ("192.0.0.0/24", ["IETF Protocol Assignments"]),
    ("192.0.0.1", ["IPv4 Service Continuity Prefix"]),
    ("192.0.0.8", ["IPv4 dummy address"]),
    ("192.0.0.170", ["NAT64/DNS64 Discovery"]),
    ("192.0.0.200", ["IETF Protocol Assignments"]),
    ("192.88.99.0/24", ["Deprecated (6to4 Relay Anycast)"]),
    ("192.88.99.1", ["Deprecated (6to4 Relay Anycast)"]),
    ("192.88.99.2", ["6a44-relay anycast address"]),
    ("198.18.0.0/15", ["Benchmarking"]),
    ("198.19.255.255", ["Benchmarking"]),
    ("224.0.0.251", ["Multicast"]),
    ("239.255.255.250", ["Multicast"]),
    ("240.0.0.0/4", ["Reserved"]),
    ("250.1.2.3", ["Reserved"]),
    ("255.255.255.255", ["Limited Broadcast"]),
    ("192.0.0.0/8", ["overlapping 192.0.0.0/24"]),
    ("::", ["Unspecified Address"]),
    ("::1", ["Loopback Address", "a loopback address"]),
    ("::203.0.113.4", ["not IPv6 Global Unicast 2000::/3"]),
    ("::ffff:0:0/96", ["IPv4-mapped Address", CHECK_IP_URL]),
    ("::ffff:203.0.113.4", ["IPv4-mapped Address", "list 203.0.113.4 instead"]),
    ("::ffff:10.0.0.1", ["IPv4-mapped Address", "list that instead", CHECK_IP_URL]),
    ("2002:a00:1::/48", ["6to4", "list that instead", CHECK_IP_URL]),
    ("::ffff:198.51.100.0/120", ["IPv4-mapped Address", "list 198.51.100.0/24 instead"]),
    ("64:ff9b::/96", ["IPv4-IPv6 Translat.", "NAT64", CHECK_IP_URL]),
    ("64:ff9b::203.0.113.4", ["64:ff9b::/96", "NAT64", "not a client"]),
    ("64:ff9b:1::/48", ["64:ff9b:1::/48", "NAT64"]),
    ("100::/64", ["Discard-Only Address Block"]),
    ("100:0:0:1::1", ["Dummy IPv6 Prefix"]),
    ("1000::1", ["not IPv6 Global Unicast 2000::/3"]),
    ("4000::1", ["not IPv6 Global Unicast 2000::/3"]),
    ("2001::/23", ["IETF Protocol Assignments"]),
    ("2001:1::4", ["IETF Protocol Assignments"]),
    ("2001:1ff::1", ["IETF Protocol Assignments"]),
    ("2001::/32", ["TEREDO", CHECK_IP_URL]),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ["TEREDO", "the client's NAT", "list 192.0.2.45 instead"]),
    ("2001:2::/48", ["Benchmarking"]),
    ("2001:10::/28", ["Deprecated (previously ORCHID)"]),
    ("2001:1f::/32", ["Deprecated (previously ORCHID)"]),
    ("2002::/16", ["6to4", CHECK_IP_URL]),
    ("2002:cb00:7104::/48", ["6to4", "list 203.0.113.4 instead"]),
    ("2002:c633:6400::/40", ["6to4", "list 198.51.100.0/24 instead"]),
    ("2002:cb00:7104:1::1", ["6to4", "list 203.0.113.4 instead"]),
    ("5f00::/16", ["Segment Routing (SRv6) SIDs"]),
    ("fc00::/7", ["Unique-Local", "a LAN address"]),
    ("fd12:3456:789a::1", ["Unique-Local", "a LAN address", CHECK_IP_URL]),
    ("fe80::/10", ["Link-Local Unicast", "a LAN address"]),
    ("fe80::1", ["Link-Local Unicast"]),
    ("fec0::1", ["Site-Local (deprecated)"]),
    ("ff02::1", ["Multicast"]),
    ("fe80::1%eth0", ["zone id", CHECK_IP_URL]),
    ("2001:db8::1%1", ["zone id"]),
    ("fe80::1%eth0/64", ["zone id"]),
]


@pytest.mark.parametrize("entry, words", REFUSED, ids=[entry for entry, _ in REFUSED])
def test_addresses_no_client_of_the_load_balancer_has_are_refused_naming_the_entry(entry, words):
    message = refusal(f"203.0.113.4, {entry}, 2001:db8::1")

    assert f"got {entry!r}" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("entry", ["::ffff:10.0.0.1", "2002:a00:1::/48", "::ffff:192.168.1.10"])
def test_the_hint_never_suggests_an_address_that_is_refused_itself(entry):
    message = refusal(f"203.0.113.4, {entry}, 2001:db8::1")

    assert "list 10." not in message and "list 192.168." not in message


ACCEPTED = [
    *(str(block) for block in DOCUMENTATION),
    "192.0.2.0/25",
    "198.51.100.7",
    "203.0.113.252/30",
    "2001:db8:1::/48",
    "2001:db8::1",
    "3fff:fff:ffff::/48",
    "3fff::1",
    "192.0.0.9",
    "192.0.0.10",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.175.48.0/24",
    "2001:1::1",
    "2001:1::3",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:20::/28",
    # ORCHIDv2 and the drone tags together: inside 2001::/23, but every address claimed by a global row.
    "2001:20::/27",
    "2620:4f:8000::/48",
]


@pytest.mark.parametrize("entry", ACCEPTED)
def test_documentation_and_globally_reachable_blocks_pass_as_themselves_or_subsets(entry):
    assert parse_allowlist(entry) == (ipaddress.ip_network(entry),)


def test_the_documentation_blocks_are_rows_of_the_table():
    assert set(DOCUMENTATION) <= {row.network for row in SPECIAL_RANGES}


def test_every_ipv6_block_outside_2000_slash_3_is_a_row():
    outside = [row.network for row in SPECIAL_RANGES if row.network.version == 6]
    outside = [network for network in outside if not network.subnet_of(GLOBAL_UNICAST)]

    assert list(ipaddress.collapse_addresses([*outside, GLOBAL_UNICAST])) == [ipaddress.ip_network("::/0")]


below, above = int(GLOBAL_UNICAST.network_address), int(GLOBAL_UNICAST.broadcast_address)


@given(st.one_of(st.integers(0, below - 1), st.integers(above + 1, 2**128 - 1)).map(ipaddress.IPv6Address))
def test_no_ipv6_address_outside_2000_slash_3_passes(address):
    assert "expected public addresses" in refusal(str(address))
