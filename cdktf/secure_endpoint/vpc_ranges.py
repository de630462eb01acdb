"""What a client inside a VPC can have as its source address, for the internal mode's allowlist.

An internal Application Load Balancer is reached only from the VPC it sits in (and networks joined to
it: peering, VPN, Interconnect), so Cloud Armor sees the client's own internal address: a VM's, a
Cloud Run job's Direct VPC egress subnet's, or an on-premises host's. Those are the ranges Google
lets a VPC subnet use ("Valid IPv4 ranges", https://cloud.google.com/vpc/docs/subnets#valid-ranges):
RFC 1918, the shared address space, the IETF, documentation and benchmarking blocks, the class E
block, and privately used public ranges, which Google allows but which are rare, so they pass with a
warning. The blocks no subnet may use stay refused: no client of the load balancer can have them.
"""

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Block:
    network: ipaddress.IPv4Network
    name: str
    reference: str


def _block(cidr: str, name: str, reference: str) -> Block:
    return Block(ipaddress.IPv4Network(cidr), name, reference)


# The non-public ranges Google lists as valid for a subnet's primary or secondary range.
VPC_RANGES = (
    _block("10.0.0.0/8", "Private-Use", "RFC 1918"),
    _block("172.16.0.0/12", "Private-Use", "RFC 1918"),
    _block("192.168.0.0/16", "Private-Use", "RFC 1918"),
    _block("100.64.0.0/10", "Shared Address Space", "RFC 6598"),
    _block("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890"),
    _block("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737"),
    _block("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737"),
    _block("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737"),
    _block("192.88.99.0/24", "6to4 Relay Anycast (deprecated)", "RFC 7526"),
    _block("198.18.0.0/15", "Benchmarking", "RFC 2544"),
    _block("240.0.0.0/4", "Reserved for future use (class E)", "RFC 1112"),
)
# Ranges no subnet may use: no client of an internal load balancer has an address in them.
NEVER_A_VPC_CLIENT = (
    _block("0.0.0.0/8", "This network", "RFC 791"),
    _block("127.0.0.0/8", "Loopback", "RFC 1122"),
    _block("169.254.0.0/16", "Link Local", "RFC 3927"),
    _block("224.0.0.0/4", "Multicast", "RFC 5771"),
    _block("255.255.255.255/32", "Limited Broadcast", "RFC 919"),
)


def never_a_client(network: ipaddress.IPv4Network) -> Block | None:
    """The refused block `network` overlaps, if any."""
    for block in NEVER_A_VPC_CLIENT:
        if block.network.overlaps(network):
            return block
    return None


def privately_used_public(networks: tuple[Network, ...]) -> list[Network]:
    """The IPv4 ranges, or parts of them, outside every non-public range a subnet may use."""
    found = []
    for network in networks:
        if network.version == 4 and not any(network.subnet_of(b.network) for b in VPC_RANGES):
            found.append(network)
    return found


def public_range_warning(networks: tuple[Network, ...]) -> str | None:
    public = privately_used_public(networks)
    if not public:
        return None
    return (
        f"ALLOWED_IP_RANGES: {', '.join(map(str, public))} "
        f"{'is a public range' if len(public) == 1 else 'are public ranges'}, which is unusual "
        "with EXPOSURE=internal: only clients inside the VPC (or joined to it by peering, VPN or "
        "Interconnect) reach the internal load balancer, and Cloud Armor sees their internal "
        "addresses. Keep it only if your VPC or your on-premises network uses it as a privately "
        "used public range; a client's internet address never arrives here."
    )
