"""ALLOWED_IP_RANGES: parsed, checked, folded, and split into Cloud Armor rules.

Only what a client of a global external load balancer can have as its source address passes: global
unicast ranges (and the documentation blocks, which admit nobody), none wider than a /8 or /16, and
not more addresses in all than one such block, judged again after folding.
"""

import ipaddress
from collections.abc import Sequence

from secure_endpoint.special_ranges import Meant, SpecialRange, refusing
from secure_endpoint.vpc_ranges import never_a_client

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A basic SRC_IPS_V1 rule of Cloud Armor accepts at most 10 ranges.
MAX_RANGES_PER_RULE = 10
# Every rule of every global security policy in a project counts against one per-project quota,
# SECURITY_POLICY_RULES (https://cloud.google.com/armor/quotas), whose value is the project's own
# (the console's Quotas page shows it) and may be far lower on a new project. 100 allow rules
# keep the whole policy at 103 with the two WAF rules and the default rule; a list that needs more
# is refused at synth instead of failing at apply with "Quota 'SECURITY_POLICY_RULES' exceeded".
MAX_ALLOW_RULES = 100
MAX_RANGES = MAX_ALLOW_RULES * MAX_RANGES_PER_RULE
SEED_PLACEHOLDER = "your ip address"
# Widest prefix of one range, and most addresses in all, per IP version.
WIDEST_PREFIX = {4: 8, 6: 16}
MOST_ADDRESSES = {4: 2**24, 6: 2**112}
CHECK_IP_URL = "https://checkip.amazonaws.com"


class AllowlistError(ValueError):
    pass


def parse_allowlist(raw: str, *, internal: bool = False) -> tuple[Network, ...]:
    """Comma- or space-separated addresses or CIDRs -> folded networks, IPv4 first.

    A bare address becomes /32 or /128; duplicates and ranges inside others are folded.
    `internal`: the addresses of clients inside a VPC (EXPOSURE=internal, `vpc_ranges`) instead
    of public ones; the width and union caps are the same.
    """
    if raw.strip().lower() == SEED_PLACEHOLDER:
        raise AllowlistError(
            f"expected your own addresses, got the placeholder {raw!r}; "
            "use the address you call from, for example 203.0.113.4 or 203.0.113.0/24"
        )
    entries = [(token, _network(token, internal)) for token in _tokens(raw)]
    folded: list[Network] = []
    for version in (4, 6):
        given = [(token, network) for token, network in entries if network.version == version]
        networks = list(ipaddress.collapse_addresses(network for _, network in given))
        _check_union(version, given, networks)
        folded.extend(networks)
    if len(folded) > MAX_RANGES:
        rules = -(-len(folded) // MAX_RANGES_PER_RULE)
        raise AllowlistError(
            f"expected at most {MAX_RANGES:,} ranges once folded ({MAX_ALLOW_RULES} Cloud Armor "
            f"rules of {MAX_RANGES_PER_RULE}), got {len(folded):,}, which would need {rules} rules: "
            "list whole networks as CIDRs instead of their single addresses"
        )
    return tuple(folded)


def _tokens(raw: str) -> list[str]:
    fields = [field.split() for field in raw.split(",")]
    # Commas before the first entry or after the last are layout; an empty field between two entries
    # is an entry that went missing, often a variable that expanded to nothing.
    while fields and not fields[-1]:
        fields.pop()
    while fields and not fields[0]:
        fields.pop(0)
    if not fields:
        raise AllowlistError(
            "expected IPv4/IPv6 addresses or CIDRs, comma- or space-separated, "
            f"got {raw!r}: an empty allowlist would make a policy that denies everyone"
        )
    for before, field in zip(fields, fields[1:]):
        if not field:
            raise AllowlistError(
                "expected an address or CIDR between every two commas, "
                f"got an empty entry after {before[-1]!r} in {raw!r}; "
                "remove the extra comma, or fill in the address that is missing"
            )
    return [token for field in fields for token in field]


def refuse_zone_id(token: str) -> None:
    """AllowlistError for `fe80::1%eth0`: a zone id names an interface of one machine."""
    if "%" in token:
        raise AllowlistError(
            f"expected addresses as the load balancer sees them, got {token!r} with a zone id, "
            "which names an interface of one machine; "
            f"list your public address instead, the one {CHECK_IP_URL} shows"
        )


def _network(token: str, internal: bool = False) -> Network:
    refuse_zone_id(token)
    try:
        network = ipaddress.ip_network(token, strict=False)
    except ValueError:
        raise AllowlistError(f"expected IPv4/IPv6 addresses or CIDRs, got {token!r}") from None
    # A range that would be refused anyway is better refused now than after a round of fixing.
    (judge_internal if internal else _judge)(token, network)
    if ipaddress.ip_interface(token).ip != network.network_address:
        raise AllowlistError(
            f"expected a network address, got {token!r} with host bits set; did you mean {network}?"
        )
    return network


def _judge(token: str, network: Network) -> None:
    if network.prefixlen == 0:
        raise AllowlistError(
            f"expected ranges that leave someone out, got {token!r}, which lets everyone in"
        )
    blocking = refusing(network)
    inside = [row for row in blocking if network.subnet_of(row.network)]
    if inside:
        # The most specific block the entry lies in says best what the user had in mind.
        row = max(inside, key=lambda row: row.network.prefixlen)
        raise AllowlistError(_special(token, network, row, "in"))
    widest = WIDEST_PREFIX[network.version]
    if network.prefixlen < widest:
        raise AllowlistError(
            f"expected IPv{network.version} ranges no wider than /{widest}, "
            f"got {token!r}, 1/{2**network.prefixlen:,} of all IPv{network.version} addresses"
        )
    if blocking:
        raise AllowlistError(_special(token, network, blocking[0], "overlapping"))


# --- EXPOSURE=internal: the clients are inside a VPC (secure_endpoint.vpc_ranges) ---
def judge_internal(token: str, network: Network) -> None:
    if network.prefixlen == 0:
        raise AllowlistError(
            f"expected ranges that leave someone out, got {token!r}, which lets everyone in"
        )
    if network.version == 6:
        raise AllowlistError(
            f"expected IPv4 addresses with EXPOSURE=internal, got {token!r}: the internal load "
            "balancer has an IPv4 address only, so no IPv6 client ever reaches it"
        )
    block = never_a_client(network)
    if block is not None:
        raise AllowlistError(
            f"expected addresses of clients inside your VPC, got {token!r}, overlapping "
            f"{block.network} ({block.name}, {block.reference}), which no VPC subnet may use, so "
            "no client of the internal load balancer ever has it; list the client's internal "
            "address (a VM's, or the subnet of a Cloud Run job's Direct VPC egress) instead"
        )
    if network.prefixlen < WIDEST_PREFIX[4]:
        raise AllowlistError(
            f"expected IPv4 ranges no wider than /{WIDEST_PREFIX[4]}, "
            f"got {token!r}, 1/{2**network.prefixlen:,} of all IPv4 addresses"
        )


# --- end of EXPOSURE=internal ---


def _special(token: str, network: Network, row: SpecialRange, relation: str) -> str:
    message = (
        f"expected public addresses, got {token!r}, {relation} {row.network} "
        f"({row.name}, {row.reference}), "
        "which is never the source of a request to a global load balancer"
    )
    if row.meant is None:
        return message
    return f"{message}. It is {row.meant.value}: {_instead(row.meant, network)}"


def _instead(meant: Meant, network: Network) -> str:
    """What to list instead of an address of a block a user most likely confused with their own."""
    checked = f"the one {CHECK_IP_URL} shows"
    if meant is Meant.CARRIER_NAT:
        return (
            "Cloud Armor sees the public IPv4 address your provider translates it to, "
            f"so list that instead, {checked}"
        )
    if meant is Meant.NAT64:
        return (
            "it stands for an IPv4 server, not a client; a client behind NAT64 reaches Cloud Armor "
            f"from its gateway's IPv4 address, so list that instead, {checked}"
        )
    if meant in (Meant.IPV4_MAPPED, Meant.SIX_TO_FOUR, Meant.TEREDO):
        seen = "the IPv4 address it carries"
        if meant is Meant.TEREDO:
            seen = "the IPv4 address of the client's NAT"
        embedded = _embedded_ipv4(meant, network)
        # An address that would itself be refused (`::ffff:10.0.0.1`) is no advice to follow.
        if embedded is None or refusing(embedded):
            return f"Cloud Armor sees {seen}, so list that instead, {checked}"
        shown = embedded.network_address if embedded.prefixlen == 32 else embedded
        return f"Cloud Armor sees {seen}, so list {shown} instead"
    return f"list your public address instead, {checked}"


def _embedded_ipv4(meant: Meant, network: Network) -> ipaddress.IPv4Network | None:
    value, length = int(network.network_address), network.prefixlen
    if meant is Meant.IPV4_MAPPED and length > 96:
        return ipaddress.IPv4Network((value & 0xFFFFFFFF, length - 96))
    if meant is Meant.SIX_TO_FOUR and length > 16:
        # 2002:WWXX:YYZZ::/48 carries the IPv4 address WW.XX.YY.ZZ.
        return ipaddress.IPv4Network((value >> 80 & 0xFFFFFFFF, min(length - 16, 32)))
    if meant is Meant.TEREDO and length == 128:
        # The last 32 bits are the client's public IPv4 address, as its NAT maps it, inverted.
        return ipaddress.IPv4Network((~value & 0xFFFFFFFF, 32))
    return None


def _check_union(version: int, given: list[tuple[str, Network]], folded: list[Network]) -> None:
    widest = WIDEST_PREFIX[version]
    for network in folded:
        if network.prefixlen < widest:
            parts = [token for token, entry in given if entry.subnet_of(network)]
            raise AllowlistError(
                f"expected IPv{version} ranges no wider than /{widest} once folded, "
                f"got {_names(parts)}, which fold into {network}"
            )
    total = sum(network.num_addresses for network in folded)
    if total > MOST_ADDRESSES[version]:
        biggest = [token for token, _ in sorted(given, key=lambda entry: entry[1].prefixlen)]
        raise AllowlistError(f"{_too_many(version, total)} from {_names(biggest)}")


def _too_many(version: int, total: int) -> str:
    widest = WIDEST_PREFIX[version]
    if version == 4:
        return (
            f"expected at most {MOST_ADDRESSES[4]:,} IPv4 addresses in all (one /{widest}), "
            f"got {total:,} ({total / 2**32:.1%} of the IPv4 internet)"
        )
    # Exact IPv6 counts run to 34 digits, which tell a reader nothing.
    return f"expected at most 2^112 IPv6 addresses in all (one /{widest}), got more"


def _names(tokens: list[str], shown: int = 3) -> str:
    named = ", ".join(repr(token) for token in tokens[:shown])
    return named if len(tokens) <= shown else f"{named} and {len(tokens) - shown} more"


def chunk_ranges(networks: Sequence[Network]) -> list[list[str]]:
    """The ranges in groups that each fit one Cloud Armor rule."""
    ranges = [str(network) for network in networks]
    return [ranges[i : i + MAX_RANGES_PER_RULE] for i in range(0, len(ranges), MAX_RANGES_PER_RULE)]
