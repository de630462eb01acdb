"""ALLOWED_IP_RANGES: parsed, checked, folded, and split into Cloud Armor rules."""

import ipaddress
import re
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A basic SRC_IPS_V1 rule of Cloud Armor accepts at most 10 ranges.
MAX_RANGES_PER_RULE = 10
SEED_PLACEHOLDER = "your ip address"


class AllowlistError(ValueError):
    pass


def parse_allowlist(raw: str) -> tuple[Network, ...]:
    """Comma- or space-separated addresses or CIDRs -> folded networks, IPv4 first.

    A bare address becomes /32 or /128; duplicates and ranges inside others are folded.
    """
    text = raw.strip()
    if not text:
        raise AllowlistError("expected IPv4/IPv6 addresses or CIDRs, comma- or space-separated, got ''")
    if text.lower() == SEED_PLACEHOLDER:
        raise AllowlistError(
            f"expected your own addresses, got the placeholder {raw!r}; "
            "use the address you call from, for example 203.0.113.4 or 203.0.113.0/24"
        )
    networks = [_network(token) for token in re.split(r"[\s,]+", text) if token]
    folded: list[Network] = []
    for version in (4, 6):
        folded.extend(ipaddress.collapse_addresses(n for n in networks if n.version == version))
    return tuple(folded)


def _network(token: str) -> Network:
    try:
        network = ipaddress.ip_network(token, strict=True)
    except ValueError:
        try:
            meant = ipaddress.ip_network(token, strict=False)
        except ValueError:
            raise AllowlistError(
                f"expected IPv4/IPv6 addresses or CIDRs, got {token!r}"
            ) from None
        raise AllowlistError(
            f"expected a network address, got {token!r} with host bits set; did you mean {meant}?"
        ) from None
    if network.prefixlen == 0:
        raise AllowlistError(
            f"expected ranges that leave someone out, got {token!r}, which lets everyone in"
        )
    return network


def chunk_ranges(networks: Sequence[Network]) -> list[list[str]]:
    """The ranges in groups that each fit one Cloud Armor rule."""
    ranges = [str(network) for network in networks]
    return [ranges[i : i + MAX_RANGES_PER_RULE] for i in range(0, len(ranges), MAX_RANGES_PER_RULE)]
