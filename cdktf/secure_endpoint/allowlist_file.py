"""ALLOWLIST_FILE: the allowlist as named entries, each with an owner, a reason and an expiry.

    [[entry]]
    range = "203.0.113.0/28"
    owner = "payments team <payments@example.com>"
    reason = "nightly batch scoring from the payments VPC's Cloud NAT"
    expires = 2027-03-31          # optional: a TOML date or datetime, written without quotes
    shared_cloud = true           # optional: see cloud_ranges.py
    shared_cloud_reason = "..."   # required with shared_cloud

Every entry's range is judged as an ALLOWED_IP_RANGES token is (allowlist.py), and the ranges of all
entries together as the whole list is. Owners, reasons and expiry stay with the entries: the folded
networks that become Cloud Armor rules only say which entries they came from (`owners_of`), so two
adjacent ranges of two owners fold into one network without losing either owner.

An entry lapses when its expiry is reached: `expires = 2027-03-31` admits its range up to the end of
2027-03-30 (UTC), and synth refuses it from 2027-03-31 on. A datetime without an offset is UTC.
"""

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from secure_endpoint.allowlist import AllowlistError, Network, parse_allowlist
from secure_endpoint.cloud_ranges import CloudRangesError, check_entries, check_ranges

VARIABLE = "ALLOWLIST_FILE"
RANGES_VARIABLE = "ALLOWED_IP_RANGES"
# Set by `make destroy`: an expired entry must never keep a user from tearing the endpoint down.
COMMAND_VARIABLE, DESTROY = "STACK_COMMAND", "destroy"
WARN_BEFORE = timedelta(days=14)
REQUIRED = ("range", "owner", "reason")
OPTIONAL = ("expires", "shared_cloud", "shared_cloud_reason")
# Cloud Armor limits a rule's description to 64 characters (Cloud Armor best practices, "Provide
# rule descriptions": https://cloud.google.com/armor/docs/best-practices).
DESCRIPTION_MAX = 64
MAX_TEXT = 200


class AllowlistFileError(AllowlistError):
    """One line naming the variable, the file and the entry."""


@dataclass(frozen=True)
class Entry:
    network: Network
    owner: str
    reason: str
    # Aware, UTC: the moment the entry stops admitting its range.
    expires: datetime | None = None
    shared_cloud_reason: str | None = None
    number: int = 0  # 1-based position in the file, for messages

    def label(self) -> str:
        return f"entry {self.number} ({self.network}, owner {self.owner!r})"

    def expiry_text(self) -> str:
        if self.expires is None:
            return "never"
        if self.expires.timetz() == time(0, tzinfo=UTC):
            return self.expires.date().isoformat()
        return self.expires.isoformat()

    def as_json(self) -> dict:
        return {
            "range": str(self.network),
            "owner": self.owner,
            "reason": self.reason,
            "expires": None if self.expires is None else self.expires.isoformat(),
            "shared_cloud_reason": self.shared_cloud_reason,
        }

    @classmethod
    def from_json(cls, values: Mapping, number: int = 0) -> "Entry":
        expires = values.get("expires")
        return cls(
            network=ipaddress.ip_network(values["range"]),
            owner=values["owner"],
            reason=values["reason"],
            expires=datetime.fromisoformat(expires) if expires else None,
            shared_cloud_reason=values.get("shared_cloud_reason"),
            number=number,
        )


@dataclass(frozen=True)
class Allowlist:
    """What the allowlist settings give: folded networks for the rules, and the entries behind them."""

    networks: tuple[Network, ...]
    entries: tuple[Entry, ...] = ()
    source: str = RANGES_VARIABLE


def now_utc() -> datetime:
    return datetime.now(UTC)


def read_allowlist(environ: Mapping[str, str], *, now: datetime | None = None) -> Allowlist:
    """ALLOWED_IP_RANGES or ALLOWLIST_FILE, whichever is set (both is an error).

    Expired entries are refused unless STACK_COMMAND=destroy. `now` is the clock (aware).
    """
    path = environ.get(VARIABLE, "").strip()
    raw = environ.get(RANGES_VARIABLE, "")
    if path and raw.strip():
        raise AllowlistFileError(
            f"{VARIABLE}: expected either {VARIABLE} or {RANGES_VARIABLE}, got both "
            f"({VARIABLE}={path!r}, {RANGES_VARIABLE}={raw.strip()!r}); "
            f"move the ranges into {path} as entries with an owner, and unset {RANGES_VARIABLE}"
        )
    if not path:
        try:
            networks = parse_allowlist(raw)
            check_ranges(networks)
        except (AllowlistError, CloudRangesError) as error:
            raise AllowlistFileError(f"{RANGES_VARIABLE}: {error}") from None
        return Allowlist(networks)
    destroying = environ.get(COMMAND_VARIABLE, "").strip() == DESTROY
    return load_allowlist_file(Path(path), now=now or now_utc(), enforce_expiry=not destroying)


def load_allowlist_file(
    path: Path,
    *,
    now: datetime,
    enforce_expiry: bool = True,
    judge_clouds: bool = True,
    internal: bool = False,
) -> Allowlist:
    """`judge_clouds=False` reads an earlier version as it was (allowlist-diff's BASE).
    `internal`: the ranges are VPC clients' (EXPOSURE=internal), where no cloud's shared egress
    arrives, so the clouds' ranges are not judged either."""
    where = f"{VARIABLE}: {path}"
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except FileNotFoundError:
        raise AllowlistFileError(
            f"{where}: expected a TOML file of [[entry]] tables, found no such file"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise AllowlistFileError(f"{where}: cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise AllowlistFileError(f"{where}: expected TOML, got a syntax error: {error}") from None
    others = sorted(set(document) - {"entry"})
    if others:
        raise AllowlistFileError(
            f"{where}: expected only [[entry]] tables, got {', '.join(repr(k) for k in others)}"
        )
    tables = document.get("entry", [])
    if not isinstance(tables, list) or not tables:
        raise AllowlistFileError(
            f"{where}: expected at least one [[entry]] table with range, owner and reason; "
            "an empty allowlist would make a policy that denies everyone"
        )
    entries = tuple(
        _entry(where, number, table, internal) for number, table in enumerate(tables, start=1)
    )
    try:
        networks = parse_allowlist(
            ",".join(str(entry.network) for entry in entries), internal=internal
        )
        if judge_clouds and not internal:
            check_entries(entries)
    except (AllowlistError, CloudRangesError) as error:
        raise AllowlistFileError(f"{where}: {error}") from None
    if enforce_expiry:
        expired = [entry for entry in entries if entry.expires is not None and entry.expires <= now]
        if expired:
            named = "; ".join(f"{e.label()} expired on {e.expiry_text()}" for e in expired)
            raise AllowlistFileError(
                f"{where}: {len(expired)} expired entr{'y' if len(expired) == 1 else 'ies'}: {named}; "
                "remove it, or agree a new `expires` date with its owner"
            )
    return Allowlist(networks, entries, source=str(path))


def expiry_warnings(entries: Iterable[Entry], now: datetime) -> list[str]:
    """One line per entry that lapses within WARN_BEFORE (or has lapsed)."""
    lines = []
    for entry in entries:
        if entry.expires is None or entry.expires - now > WARN_BEFORE:
            continue
        left = entry.expires - now
        when = "has expired" if left <= timedelta(0) else f"expires in {_days(left)}"
        lines.append(
            f"warning: {VARIABLE} {entry.label()} {when} ({entry.expiry_text()}); "
            f"its reason: {entry.reason}"
        )
    return lines


def _days(left: timedelta) -> str:
    days = left.days + (1 if left.seconds or left.microseconds else 0)
    return "1 day" if days == 1 else f"{days} days"


def _entry(where: str, number: int, table, internal: bool = False) -> Entry:
    at = f"{where}: entry {number}"
    if not isinstance(table, dict):
        raise AllowlistFileError(f"{at}: expected an [[entry]] table, got {table!r}")
    unknown = sorted(set(table) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise AllowlistFileError(
            f"{at}: expected only the keys {', '.join(REQUIRED + OPTIONAL)}, "
            f"got {', '.join(repr(k) for k in unknown)}"
        )
    missing = [key for key in REQUIRED if key not in table]
    if missing:
        raise AllowlistFileError(
            f"{at}: expected {' and '.join(missing)}: every entry says whose it is and why, got "
            f"{', '.join(f'{k} = {table[k]!r}' for k in table) or 'an empty table'}"
        )
    raw_range = table["range"]
    if not isinstance(raw_range, str):
        raise AllowlistFileError(f"{at}: expected range as a quoted CIDR string, got {raw_range!r}")
    if len(raw_range.replace(",", " ").split()) > 1:
        raise AllowlistFileError(
            f"{at}: expected one address or CIDR in range, got {raw_range!r}; give each range an entry"
        )
    try:
        (network,) = parse_allowlist(raw_range, internal=internal)
    except AllowlistError as error:
        raise AllowlistFileError(f"{at}: range: {error}") from None
    owner = _text(at, table, "owner", "who to ask about this range, such as a team and its address")
    reason = _text(at, table, "reason", "why this range is let in")
    at = f"{where}: entry {number} ({network})"
    expires = _expires(at, table.get("expires"))
    shared = table.get("shared_cloud", False)
    if not isinstance(shared, bool):
        raise AllowlistFileError(f"{at}: expected shared_cloud = true or false, got {shared!r}")
    shared_reason = None
    if shared:
        shared_reason = _text(
            at, table, "shared_cloud_reason",
            "why letting in a range of a public cloud's shared addresses is safe here",
        )  # fmt: skip
    elif "shared_cloud_reason" in table:
        raise AllowlistFileError(f"{at}: shared_cloud_reason is given but shared_cloud is not true")
    return Entry(network, owner, reason, expires, shared_reason, number)


def _text(at: str, table: Mapping, key: str, what: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AllowlistFileError(f"{at}: expected {key}: {what}; got {value!r}")
    value = value.strip()
    if not value.isprintable():
        raise AllowlistFileError(
            f"{at}: expected {key} on one line of printable text, got {value!r}"
        )
    if len(value) > MAX_TEXT:
        raise AllowlistFileError(
            f"{at}: expected {key} of at most {MAX_TEXT} characters, got {len(value)}"
        )
    return value


def _expires(at: str, value) -> datetime | None:
    if value is None:
        return None
    # datetime is a subclass of date: checked first.
    if isinstance(value, datetime):
        return (
            value.replace(tzinfo=UTC)
            if value.tzinfo is None
            else value.astimezone(UTC)
        )
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    example = "expires = 2027-03-31"
    if isinstance(value, str):
        raise AllowlistFileError(
            f"{at}: expected expires as a TOML date, written without quotes ({example}), "
            f"got the string {value!r}; remove the quotes"
        )
    raise AllowlistFileError(
        f"{at}: expected expires as a TOML date such as {example}, got {value!r}"
    )


def owners_of(entries: Sequence[Entry], ranges: Iterable[str]) -> list[str]:
    """The owners of the entries inside the given folded ranges, each once, in file order."""
    networks = [ipaddress.ip_network(text) for text in ranges]
    owners: list[str] = []
    for entry in entries:
        if entry.owner in owners:
            continue
        if any(entry.network.version == n.version and entry.network.subnet_of(n) for n in networks):
            owners.append(entry.owner)
    return owners


def entries_containing(entries: Sequence[Entry], address: str) -> list[Entry]:
    ip = ipaddress.ip_address(address)
    return [
        entry for entry in entries if entry.network.version == ip.version and ip in entry.network
    ]


def rule_description(owners: Sequence[str], index: int, count: int) -> str:
    """`allowlist 2/3: alice, bob +4 more`, within Cloud Armor's 64 characters."""
    head = f"allowlist {index + 1}/{count}: "
    for shown in range(len(owners), 0, -1):
        rest = len(owners) - shown
        text = head + ", ".join(owners[:shown]) + (f" +{rest} more" if rest else "")
        if len(text) <= DESCRIPTION_MAX:
            return text
    more = f" +{len(owners) - 1} more" if len(owners) > 1 else ""
    room = DESCRIPTION_MAX - len(head) - len(more) - 1
    return f"{head}{owners[0][:room]}…{more}"

