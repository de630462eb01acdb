"""Whose entry let an address in: the owner lines `make check-ip` prints under an allowed address."""

import json
from pathlib import Path

from secure_endpoint.allowlist_file import Entry, entries_containing
from secure_endpoint.synthesized import SETTINGS_FILE


def recorded_entries(outdir: Path) -> tuple[Entry, ...]:
    """ALLOWLIST_FILE's entries as the last synth recorded them (the policy check-ip judges)."""
    try:
        values = json.loads((outdir / SETTINGS_FILE).read_text())
        raw = values.get("allowlist_entries") or []
        return tuple(Entry.from_json(item, number) for number, item in enumerate(raw, start=1))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # Nothing recorded, or recorded before entries were: the policy itself was judged already.
        return ()


def owner_lines(entries: tuple[Entry, ...], address: str) -> list[str]:
    return [
        f"entry {entry.network}: owner {entry.owner}; reason: {entry.reason}; expires {entry.expiry_text()}"
        for entry in entries_containing(entries, address)
    ]
