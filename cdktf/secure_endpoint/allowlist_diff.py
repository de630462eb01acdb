"""`make allowlist-diff`: what an allowlist change does, to the ranges and to the clients in the logs.

Two policies are compared, the one before (the live policy, as `make verify` reads it, or the rules
a BASE file would synthesize) and the one after (the working tree's settings). Without logs the
answer is the ranges each lets in that the other does not. With a request log export, every
request's source address is judged under both policies by check-ip's engine (armor.decide):
clients whose verdict changes are listed with their request count and last time seen.

Memory stays bounded however long the export: entries are read one at a time (log_export.py), only
clients whose verdict changes are kept one by one, and past MAX_CLIENTS of those the rest are only
counted. Speed: the ranges of a policy's rules cut the address space into cells whose addresses all
match the same rules, so armor.decide runs once per cell (on its first address seen) and each request
costs a bisection to find its cell.
"""

import bisect
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from secure_endpoint.allowlist_file import Entry, entries_containing
from secure_endpoint.armor import ALLOWING_ACTIONS, Rule, decide
from secure_endpoint.log_export import Request

MAX_CLIENTS = 100_000
SHOWN = 50  # clients printed per section; the counts cover all of them
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Side:
    label: str
    rules: tuple[Rule, ...]
    # ALLOWLIST_FILE's entries, when known: the live policy only has its rules' descriptions.
    entries: tuple[Entry, ...] = ()

    def owners(self, address: str, rule: Rule | None) -> str:
        if not _allows(rule):
            return ""
        entries = entries_containing(self.entries, address)
        if entries:
            return "; ".join(f"owner {e.owner} ({e.network}: {e.reason})" for e in entries)
        return ""

    def allowed_networks(self) -> list[Network]:
        """Every range an allowing address rule enforces, folded ("*" is every address)."""
        networks: list[Network] = []
        for rule in self.rules:
            if rule.action not in ALLOWING_ACTIONS or rule.expression is not None or rule.preview:
                continue
            for text in rule.src_ip_ranges:
                if text == "*":
                    networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
                else:
                    networks.append(ipaddress.ip_network(text, strict=False))
        return _fold(networks)


def _fold(networks: Iterable[Network]) -> list[Network]:
    networks = list(networks)
    return [
        n
        for version in (4, 6)
        for n in ipaddress.collapse_addresses(x for x in networks if x.version == version)
    ]


def subtract(left: Sequence[Network], right: Sequence[Network]) -> list[Network]:
    """The addresses of `left` outside `right`, as CIDRs: an interval sweep over both lists."""
    result: list[Network] = []
    for version in (4, 6):
        cut = [
            (int(n.network_address), int(n.broadcast_address))
            for n in right
            if n.version == version
        ]
        cut.sort()
        for network in (n for n in left if n.version == version):
            start, end = int(network.network_address), int(network.broadcast_address)
            for low, high in cut:
                if high < start or low > end:
                    continue
                if low > start:
                    result += _cidrs(version, start, low - 1)
                start = max(start, high + 1)
                if start > end:
                    break
            if start <= end:
                result += _cidrs(version, start, end)
    return result


def _cidrs(version: int, start: int, end: int) -> list[Network]:
    kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return list(ipaddress.summarize_address_range(kind(start), kind(end)))


def _allows(rule: Rule | None) -> bool:
    return rule is not None and rule.action in ALLOWING_ACTIONS


class Cells:
    """One policy's decisions, one per cell of addresses that match the same address rules."""

    def __init__(self, rules: tuple[Rule, ...]):
        self.rules = rules
        bounds: dict[int, set[int]] = {4: set(), 6: set()}
        for rule in rules:
            for text in rule.src_ip_ranges if rule.expression is None else ():
                if text != "*":
                    network = ipaddress.ip_network(text, strict=False)
                    bounds[network.version] |= {
                        int(network.network_address),
                        int(network.broadcast_address) + 1,
                    }
        self.bounds = {version: sorted(values) for version, values in bounds.items()}
        # At most two cells per range and version: bounded by the policy's size, not the traffic.
        self.decided: dict[tuple[int, int], Rule | None] = {}

    def rule(self, request: Request) -> Rule | None:
        cell = (request.version, bisect.bisect_right(self.bounds[request.version], request.value))
        if cell not in self.decided:
            self.decided[cell] = decide(self.rules, request.address).rule
        return self.decided[cell]


@dataclass
class Client:
    requests: int
    last_seen: str
    before: Rule | None
    after: Rule | None


@dataclass
class Replay:
    """Feeds requests through both policies; keeps what the report needs and nothing else."""

    before: Side
    after: Side
    max_clients: int = MAX_CLIENTS
    requests: int = 0
    unchanged_requests: int = 0
    cut_off: dict[str, Client] = field(default_factory=dict)
    admitted: dict[str, Client] = field(default_factory=dict)
    # Requests of changed clients past max_clients, which are counted only.
    untracked: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})

    def __post_init__(self):
        self._before, self._after = Cells(self.before.rules), Cells(self.after.rules)

    def feed(self, request: Request) -> None:
        self.requests += 1
        before, after = self._before.rule(request), self._after.rule(request)
        if _allows(before) == _allows(after):
            self.unchanged_requests += 1
            return
        group = self.cut_off if _allows(before) else self.admitted
        client = group.get(request.address)
        if client is not None:
            client.requests += 1
            client.last_seen = max(client.last_seen, request.timestamp)
        elif len(self.cut_off) + len(self.admitted) < self.max_clients:
            group[request.address] = Client(1, request.timestamp, before, after)
        else:
            self.untracked[_allows(before)] += 1

    @property
    def changed(self) -> bool:
        return bool(self.cut_off or self.admitted or any(self.untracked.values()))

    def report(self) -> list[str]:
        lines = []
        for title, group, was_allowed in (
            ("cut off (answered before, refused after)", self.cut_off, True),
            ("newly admitted (refused before, answered after)", self.admitted, False),
        ):
            extra = self.untracked[was_allowed]
            requests = sum(c.requests for c in group.values()) + extra
            lines.append(f"{title}: {_count(len(group), 'client')}, {_count(requests, 'request')}")
            if extra:
                lines.append(
                    f"  and {_count(extra, 'request')} from clients past the first {self.max_clients:,}, counted only"
                )
            for transition, clients in _by_transition(group).items():
                lines.append(f"  {transition}: {_count(len(clients), 'client')}")
            ranked = sorted(group.items(), key=lambda item: (-item[1].requests, item[0]))
            width = max((len(address) for address, _ in ranked[:SHOWN]), default=0)
            for address, client in ranked[:SHOWN]:
                owners = (self.before.owners(address, client.before) if was_allowed
                          else self.after.owners(address, client.after))  # fmt: skip
                lines.append(
                    f"    {address:<{width}}  {_count(client.requests, 'request')}, last seen "
                    f"{client.last_seen or 'at no recorded time'}"
                    + (f"; {owners}" if owners else "")
                )
            if len(ranked) > SHOWN:
                lines.append(f"    and {len(ranked) - SHOWN:,} more clients")
        lines.append(f"unchanged: {_count(self.unchanged_requests, 'request')}")
        return lines


def _by_transition(group: dict[str, Client]) -> dict[str, list[str]]:
    transitions: dict[str, list[str]] = {}
    for address, client in group.items():
        key = f"{_rule(client.before)} -> {_rule(client.after)}"
        transitions.setdefault(key, []).append(address)
    return transitions


def _rule(rule: Rule | None) -> str:
    return rule.label() if rule else "no rule matched"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def range_report(before: Side, after: Side) -> tuple[list[str], bool]:
    """The ranges only one side lets in, with their owners; and whether there are any."""
    old, new = before.allowed_networks(), after.allowed_networks()
    closed, opened = subtract(old, new), subtract(new, old)
    lines = []
    for title, networks, side in (
        ("no longer allowed", closed, before),
        ("newly allowed", opened, after),
    ):
        lines.append(f"ranges {title}: {', '.join(map(str, networks[:20])) or 'none'}"
                     + (f" and {len(networks) - 20} more" if len(networks) > 20 else ""))  # fmt: skip
        for network in networks[:20]:
            address = str(network.network_address)
            rule = decide(side.rules, address).rule
            owners = side.owners(address, rule)
            lines.append(f"  {network}: {_rule(rule)}" + (f"; {owners}" if owners else ""))
    return lines, bool(closed or opened)
