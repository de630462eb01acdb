"""Public clouds' shared address ranges, which an allowlist must not open to every tenant.

Any customer's virtual machine, Cloud Run job or Lambda function may send from an address of its
cloud's published ranges: a range overlapping them lets in whoever rents a machine there. Snapshots of
the published files live in data/cloud_ranges/ (sources.json says where and when each came from),
trimmed to what can egress: Google Cloud's cloud.json whole (customers' external addresses), AWS's
ip-ranges.json's EC2 ranges (AMAZON is a superset that adds Amazon's own services), and Azure's service
tags' AzureCloud tag (every Azure public address). `make refresh-cloud-ranges` replaces them.

The own-NAT rule: an entry of at most 16 IPv4 addresses (/28) or one IPv6 /96 (what Google Cloud
gives one VM) passes without a flag even inside a cloud's range, since a cloud hands out addresses a
customer reserves (a static address, a Cloud NAT's addresses, an Elastic IP) one at a time, and
a team's NAT needs a handful. A wider overlap can only be a shared pool or more than one
customer's addresses, and is refused unless its entry says `shared_cloud = true` with a
`shared_cloud_reason`; ranges folded together from several narrow entries are judged as the range
they fold into.

Looking up an entry is an interval search, not a scan: the ranges that contain the entry are among
its at most 32 (or 128) supernets, found in a dict; the ranges inside it start within it, found by
bisecting the sorted starts.
"""

import bisect
import functools
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DATA = Path(__file__).resolve().parent / "data" / "cloud_ranges"
SOURCES_FILE = "sources.json"
# Narrowest prefix that counts as "your own few addresses" per IP version; see the module's doc.
OWN_NAT_PREFIX = {4: 28, 6: 96}


@dataclass(frozen=True)
class Cloud:
    name: str
    file: str
    url: str | None  # None: no stable URL (Azure's file moves weekly), refreshed from a local file
    version_fields: tuple[str, ...]

    def trim(self, document: Mapping) -> dict:
        return _TRIMMERS[self.name](document)

    def networks(self, document: Mapping) -> Iterator[Network]:
        return _READERS[self.name](document)


GOOGLE = Cloud(
    "Google Cloud",
    "google-cloud.json",
    "https://www.gstatic.com/ipranges/cloud.json",
    ("syncToken", "creationTime"),
)
AWS = Cloud(
    "AWS EC2",
    "aws-ec2.json",
    "https://ip-ranges.amazonaws.com/ip-ranges.json",
    ("syncToken", "createDate"),
)
AZURE = Cloud("Azure", "azure-cloud.json", None, ("changeNumber", "cloud"))
CLOUDS = (GOOGLE, AWS, AZURE)


class CloudRangesError(ValueError):
    """A snapshot that is missing or not the shape its cloud publishes."""


def _trim_google(document: Mapping) -> dict:
    _require(GOOGLE, document, "prefixes")
    return {key: document[key] for key in (*GOOGLE.version_fields, "prefixes")}


def _trim_aws(document: Mapping) -> dict:
    _require(AWS, document, "prefixes", "ipv6_prefixes")
    return {
        **{key: document[key] for key in AWS.version_fields},
        "prefixes": [p for p in document["prefixes"] if p.get("service") == "EC2"],
        "ipv6_prefixes": [p for p in document["ipv6_prefixes"] if p.get("service") == "EC2"],
    }


def _trim_azure(document: Mapping) -> dict:
    _require(AZURE, document, "values")
    tags = [value for value in document["values"] if value.get("name") == "AzureCloud"]
    if not tags:
        raise CloudRangesError(
            "Azure: expected a service tags file with the AzureCloud tag, found none"
        )
    return {**{key: document[key] for key in AZURE.version_fields}, "values": tags}


def _require(cloud: Cloud, document: Mapping, *keys: str) -> None:
    missing = [
        key
        for key in (*cloud.version_fields, *keys)
        if not isinstance(document, dict) or key not in document
    ]
    if missing:
        raise CloudRangesError(
            f"{cloud.name}: expected its published file with {', '.join(missing)}, got none"
        )


def _read_google(document: Mapping) -> Iterator[Network]:
    for prefix in document["prefixes"]:
        yield ipaddress.ip_network(prefix.get("ipv4Prefix") or prefix["ipv6Prefix"])


def _read_aws(document: Mapping) -> Iterator[Network]:
    for prefix in document["prefixes"]:
        yield ipaddress.ip_network(prefix["ip_prefix"])
    for prefix in document["ipv6_prefixes"]:
        yield ipaddress.ip_network(prefix["ipv6_prefix"])


def _read_azure(document: Mapping) -> Iterator[Network]:
    for value in document["values"]:
        for prefix in value["properties"]["addressPrefixes"]:
            yield ipaddress.ip_network(prefix)


_TRIMMERS = {GOOGLE.name: _trim_google, AWS.name: _trim_aws, AZURE.name: _trim_azure}
_READERS = {GOOGLE.name: _read_google, AWS.name: _read_aws, AZURE.name: _read_azure}


@dataclass(frozen=True)
class Overlap:
    cloud: str
    network: Network  # the cloud's range


class CloudIndex:
    """Every cloud's ranges, for overlap look-ups in O(prefix length + log n + hits)."""

    def __init__(self, ranges: Iterable[tuple[str, Network]]):
        self._exact: dict[tuple[int, int, int], list[str]] = {}
        by_version: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        for cloud, network in ranges:
            start = int(network.network_address)
            self._exact.setdefault((network.version, start, network.prefixlen), []).append(cloud)
            by_version[network.version].append((start, network.prefixlen, cloud))
        self._sorted = {version: sorted(rows) for version, rows in by_version.items()}
        self._starts = {version: [row[0] for row in rows] for version, rows in self._sorted.items()}

    def overlaps(self, network: Network) -> list[Overlap]:
        """The clouds' ranges that contain `network` or lie inside it, widest first."""
        found: dict[tuple[str, Network], None] = {}
        version, start = network.version, int(network.network_address)
        bits = network.max_prefixlen
        for length in range(network.prefixlen + 1):  # ranges containing it (or equal to it)
            supernet_start = start >> (bits - length) << (bits - length)
            for cloud in self._exact.get((version, supernet_start, length), ()):
                found[(cloud, ipaddress.ip_network((supernet_start, length)))] = None
        end = start + network.num_addresses - 1
        rows, starts = self._sorted[version], self._starts[version]
        for row_start, length, cloud in rows[
            bisect.bisect_left(starts, start) : bisect.bisect_right(starts, end)
        ]:
            if length >= network.prefixlen:  # starts inside and is no wider: inside
                found[(cloud, ipaddress.ip_network((row_start, length)))] = None
        return [
            Overlap(cloud, net)
            for cloud, net in sorted(found, key=lambda k: (k[1].prefixlen, k[0]))
        ]


def load_document(cloud: Cloud, data: Path = DATA) -> dict:
    path = data / cloud.file
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CloudRangesError(
            f"{cloud.name}: the snapshot {path} cannot be read ({error}); `git checkout` it or "
            "run `make refresh-cloud-ranges`"
        ) from None


@functools.cache
def snapshot_index(data: Path = DATA) -> CloudIndex:
    return CloudIndex(
        (cloud.name, network)
        for cloud in CLOUDS
        for network in cloud.networks(load_document(cloud, data))
    )


def is_own_nat(network: Network) -> bool:
    return network.prefixlen >= OWN_NAT_PREFIX[network.version]


def shared_cloud_overlap(network: Network, index: CloudIndex | None = None) -> list[Overlap]:
    """Per cloud, the widest range that a range wider than the own-NAT size overlaps."""
    if is_own_nat(network):
        return []
    widest: dict[str, Overlap] = {}
    for overlap in (index or snapshot_index()).overlaps(network):
        widest.setdefault(overlap.cloud, overlap)
    return list(widest.values())


def refusal(token: str, overlaps: list[Overlap], *, flag_hint: str) -> str:
    size = " or ".join(f"/{length} (IPv{version})" for version, length in OWN_NAT_PREFIX.items())
    named = " and ".join(f"{overlap.cloud}'s {overlap.network}" for overlap in overlaps)
    clouds = " and ".join(overlap.cloud for overlap in overlaps)
    return (
        f"expected ranges outside the public clouds' shared addresses, got {token!r}, which overlaps "
        f"{named}: every customer of {clouds} may send from there. "
        f"Your own reserved NAT addresses pass as entries of {size} or narrower; {flag_hint}"
    )


def dumps(document: Mapping) -> str:
    """JSON with one list item a line: small, and a refresh's diff shows each range added or gone."""
    lines = ["{"]
    for number, (key, value) in enumerate(document.items()):
        comma = "," if number < len(document) - 1 else ""
        if isinstance(value, list):
            items = [json.dumps(item, separators=(", ", ": ")) for item in value]
            lines.append(f"{json.dumps(key)}: [")
            lines += [f"  {item}," for item in items[:-1]] + [f"  {item}" for item in items[-1:]]
            lines.append(f"]{comma}")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)}{comma}")
    return "\n".join(lines + ["}"]) + "\n"


def check_entries(entries, *, index: CloudIndex | None = None) -> None:
    """CloudRangesError for the first entry, or fold of entries, that opens a cloud's shared range.

    `entries` are ALLOWLIST_FILE's; those with a `shared_cloud_reason` may overlap. Entries without
    it are judged one by one and then as the ranges they fold into, so that adjacent narrow entries
    do not add up to a shared pool; an unflagged range inside a flagged one is the flagged one's.
    """
    index = index or snapshot_index()
    hint = "if this range is safe to let in, say why in its entry: shared_cloud = true and shared_cloud_reason"
    flagged = [entry.network for entry in entries if entry.shared_cloud_reason is not None]
    unflagged = [entry for entry in entries if entry.shared_cloud_reason is None
                 and not any(entry.network.version == f.version and entry.network.subnet_of(f) for f in flagged)]  # fmt: skip
    for entry in unflagged:
        overlap = shared_cloud_overlap(entry.network, index)
        if overlap:
            message = refusal(str(entry.network), overlap, flag_hint=hint)
            raise CloudRangesError(f"entry {entry.number} (owner {entry.owner!r}): {message}")
    for version in (4, 6):
        mine = [entry for entry in unflagged if entry.network.version == version]
        for network in ipaddress.collapse_addresses(entry.network for entry in mine):
            overlap = shared_cloud_overlap(network, index)
            if overlap:
                parts = [
                    entry
                    for entry in mine
                    if entry.network.subnet_of(network) and index.overlaps(entry.network)
                ]
                named = ", ".join(f"entry {entry.number} ({entry.network})" for entry in parts[:3])
                raise CloudRangesError(
                    f"{named} fold into {network}: {refusal(str(network), overlap, flag_hint=hint)}"
                )


def check_ranges(networks: Iterable[Network], *, index: CloudIndex | None = None) -> None:
    """For ALLOWED_IP_RANGES, whose ranges cannot carry a flag."""
    for network in networks:
        overlap = shared_cloud_overlap(network, index)
        if overlap:
            raise CloudRangesError(refusal(str(network), overlap, flag_hint=(
                "to let a wider range in on purpose, list it in ALLOWLIST_FILE with "
                "shared_cloud = true and a shared_cloud_reason"
            )))  # fmt: skip


def snapshot_versions(data: Path = DATA) -> dict[str, dict]:
    """Each snapshot's version fields and source, from sources.json."""
    return json.loads((data / SOURCES_FILE).read_text())
