"""Address blocks that never send a request to a global load balancer, from IANA's registries.

The rows are IANA's IPv4 and IPv6 Special-Purpose Address Registries (as of 2025-10-09), plus what
the IPv4 and IPv6 Address Space registries set apart from unicast: multicast, and every IPv6 block
outside Global Unicast 2000::/3. As in the registries, a more specific row overrides the block it
sits in: 192.0.0.9/32, an anycast address, is globally reachable inside 192.0.0.0/24, which is not.

An allowlist may hold a block only if the registry calls it globally reachable and, for IPv6, it
lies in 2000::/3 (NAT64's 64:ff9b::/96 is "reachable" but stands for IPv4 servers, never a client),
or if it is a documentation block.

Python's `ipaddress.is_global` / `is_private` are not used: they count the documentation blocks as
private, and their answers for the rest have changed between Python versions.
"""

import enum
import functools
import ipaddress
from dataclasses import dataclass

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# Not globally reachable, but routed nowhere either, so an allowlist holding them admits nobody; the
# examples and tests here use them.
DOCUMENTATION = tuple(
    ipaddress.ip_network(block)
    for block in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)


class Meant(enum.Enum):
    """What a user who lists an address of this block most likely meant instead."""

    PUBLIC_NOT_LAN = "a LAN address"
    PUBLIC_NOT_LOOPBACK = "a loopback address"
    CARRIER_NAT = "a carrier-grade NAT address"
    IPV4_MAPPED = "an IPv4-mapped IPv6 address"
    SIX_TO_FOUR = "a 6to4 address"
    TEREDO = "a Teredo address"
    NAT64 = "a NAT64 address"


@dataclass(frozen=True)
class SpecialRange:
    network: _Network
    name: str
    reference: str
    # The registry's "Globally Reachable" column; None where it says N/A (Teredo, 6to4, and the
    # deprecated rows).
    reachable: bool | None
    meant: Meant | None = None

    @property
    def admits(self) -> bool:
        """Whether an allowlist may hold addresses this row decides for."""
        if self.network in DOCUMENTATION:
            return True
        if self.network.version == 6 and not self.network.subnet_of(GLOBAL_UNICAST):
            return False
        return self.reachable is True


def _row(
    block: str, name: str, reference: str, reachable: bool | None, meant: Meant | None = None
) -> SpecialRange:
    return SpecialRange(ipaddress.ip_network(block), name, reference, reachable, meant)


_LAN, _LOOPBACK = Meant.PUBLIC_NOT_LAN, Meant.PUBLIC_NOT_LOOPBACK
_NOT_GLOBAL_UNICAST = "not IPv6 Global Unicast 2000::/3"

SPECIAL_RANGES: tuple[SpecialRange, ...] = tuple(
    sorted(
        (
            _row("0.0.0.0/8", "This network", "RFC 791", False),
            _row("0.0.0.0/32", "This host on this network", "RFC 1122", False),
            _row("10.0.0.0/8", "Private-Use", "RFC 1918", False, _LAN),
            _row("100.64.0.0/10", "Shared Address Space", "RFC 6598", False, Meant.CARRIER_NAT),
            _row("127.0.0.0/8", "Loopback", "RFC 1122", False, _LOOPBACK),
            _row("169.254.0.0/16", "Link Local", "RFC 3927", False, _LAN),
            _row("172.16.0.0/12", "Private-Use", "RFC 1918", False, _LAN),
            _row("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False),
            _row("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
            _row("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
            _row("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
            _row("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
            _row("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
            _row("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
            _row("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
            _row("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
            _row("192.52.193.0/24", "AMT", "RFC 7450", True),
            _row("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", None),
            _row("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False),
            _row("192.168.0.0/16", "Private-Use", "RFC 1918", False, _LAN),
            _row("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
            _row("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
            _row("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
            _row("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
            _row("224.0.0.0/4", "Multicast", "RFC 5771", False),
            _row("240.0.0.0/4", "Reserved", "RFC 1112", False),
            _row("255.255.255.255/32", "Limited Broadcast", "RFC 919", False),
            # IPv6 Address Space registry: everything outside 2000::/3, in three blocks.
            _row("::/3", _NOT_GLOBAL_UNICAST, "RFC 4291", False),
            _row("4000::/2", _NOT_GLOBAL_UNICAST, "RFC 4291", False),
            _row("8000::/1", _NOT_GLOBAL_UNICAST, "RFC 4291", False),
            _row("::/128", "Unspecified Address", "RFC 4291", False),
            _row("::1/128", "Loopback Address", "RFC 4291", False, _LOOPBACK),
            _row("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False, Meant.IPV4_MAPPED),
            _row("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True, Meant.NAT64),
            _row("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", False, Meant.NAT64),
            _row("100::/64", "Discard-Only Address Block", "RFC 6666", False),
            _row("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
            _row("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
            _row("2001::/32", "TEREDO", "RFC 4380", None, Meant.TEREDO),
            _row("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
            _row("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
            _row("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
            _row("2001:2::/48", "Benchmarking", "RFC 5180", False),
            _row("2001:3::/32", "AMT", "RFC 7450", True),
            _row("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
            _row("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None),
            _row("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
            _row("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True),
            _row("2001:db8::/32", "Documentation", "RFC 3849", False),
            _row("2002::/16", "6to4", "RFC 3056", None, Meant.SIX_TO_FOUR),
            _row("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
            _row("3fff::/20", "Documentation", "RFC 9637", False),
            _row("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
            _row("fc00::/7", "Unique-Local", "RFC 4193", False, _LAN),
            _row("fe80::/10", "Link-Local Unicast", "RFC 4291", False, _LAN),
            _row("fec0::/10", "Site-Local (deprecated)", "RFC 3879", False, _LAN),
            _row("ff00::/8", "Multicast", "RFC 4291", False),
        ),
        # Wider rows first among those that start at the same address: the first row an entry
        # overlaps is then the broadest reason to refuse it.
        key=lambda row: (row.network.version, row.network.network_address, row.network.prefixlen),
    )
)


@functools.cache
def own_space(row: SpecialRange) -> tuple[_Network, ...]:
    """The part of the row's block that no more specific row claims: where its verdict holds."""
    pieces = [row.network]
    for other in SPECIAL_RANGES:
        if other.network.version == row.network.version and other.network != row.network:
            if other.network.subnet_of(row.network):
                pieces = _without(pieces, other.network)
    return tuple(pieces)


def _without(pieces: list[_Network], hole: _Network) -> list[_Network]:
    out: list[_Network] = []
    for piece in pieces:
        if not piece.overlaps(hole):
            out.append(piece)
        elif hole.subnet_of(piece) and hole != piece:
            out.extend(piece.address_exclude(hole))
    return sorted(out)


def refusing(network: _Network) -> list[SpecialRange]:
    """The rows, in table order, that refuse some address of `network`."""
    return [
        row
        for row in SPECIAL_RANGES
        if not row.admits
        and row.network.version == network.version
        and row.network.overlaps(network)
        and any(piece.overlaps(network) for piece in own_space(row))
    ]
