"""Request log exports, read as a stream: one entry in memory at a time, whatever the export's size.

Two shapes, each plain or gzip-compressed (told by the gzip magic bytes, not the file name):
- the JSON array `gcloud logging read --format=json` writes, one element per entry;
- newline-delimited JSON, one entry a line, as a Logging sink to Cloud Storage writes.

A malformed entry (not JSON, not an object, longer than MAX_ENTRY_CHARS, invalid UTF-8, or a
remoteIp that is no address) is counted and skipped, never fatal. The array is read in chunks and
each element decoded by the json module's C decoder (`raw_decode`); only an element that fails to
decode is walked character by character, to find where it ends.
"""

import gzip
import io
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CHUNK_CHARS = 1 << 20
# A load balancer request entry is about 1.5 kB; a thousand times that is no request entry.
MAX_ENTRY_CHARS = 1 << 20
_WHITESPACE = " \t\r\n"


class LogExportError(ValueError):
    """The export cannot be read at all (missing, unreadable, or neither shape)."""


@dataclass(frozen=True)
class Request:
    address: str  # normalised (ipaddress), so one client is one key
    timestamp: str
    version: int = 4
    value: int = 0  # the address as a number


@dataclass
class ReadStats:
    entries: int = 0
    malformed: int = 0
    without_address: int = 0
    first_malformed: list[str] = field(default_factory=list)  # a few, for the report

    def bad(self, where: str, why: str) -> None:
        self.malformed += 1
        if len(self.first_malformed) < 3:
            self.first_malformed.append(f"{where}: {why}")


def read_requests(path: Path, stats: ReadStats) -> Iterator[Request]:
    """Each entry's httpRequest.remoteIp and timestamp; `stats` counts what was read and skipped."""
    try:
        raw = path.open("rb")
    except OSError as error:
        raise LogExportError(f"LOGS: {path} cannot be read ({error.strerror or error})") from None
    with raw:
        binary: BinaryIO = raw
        if raw.peek(2)[:2] == b"\x1f\x8b":
            binary = gzip.GzipFile(fileobj=raw)
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
        try:
            chunks = _Chunks(text)
            entries = _array(chunks) if chunks.first() == "[" else _lines(chunks)
            for where, entry in entries:
                stats.entries += 1
                request = _request(entry)
                if isinstance(request, Request):
                    yield request
                elif request is None:
                    stats.without_address += 1
                else:
                    stats.bad(where, request)
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeError) as error:
            raise LogExportError(f"LOGS: {path} cannot be read to its end ({error})") from None


class _Malformed:
    def __init__(self, why: str):
        self.why = why


def _request(entry) -> Request | str | None:
    if isinstance(entry, _Malformed):
        return entry.why
    if not isinstance(entry, dict):
        return f"expected a log entry object, got {type(entry).__name__}"
    http = entry.get("httpRequest")
    address = http.get("remoteIp") if isinstance(http, dict) else None
    if address is None:
        return None
    try:
        # Some exports write a port after the address; the address alone is the client.
        ip = ipaddress.ip_address(address if isinstance(address, str) else "")
    except ValueError:
        return f"expected httpRequest.remoteIp to be an IPv4 or IPv6 address, got {address!r}"
    timestamp = entry.get("timestamp") or entry.get("receiveTimestamp") or ""
    return Request(str(ip), timestamp if isinstance(timestamp, str) else "", ip.version, int(ip))


class _Chunks:
    """The export's text, a chunk at a time: `buffer[position:]` is what is not consumed yet."""

    def __init__(self, text: io.TextIOWrapper):
        self.text, self.buffer, self.position, self.ended = text, "", 0, False

    def more(self) -> bool:
        """Reads a chunk, dropping what was consumed; False at the end of the export."""
        if self.ended:
            return False
        chunk = self.text.read(CHUNK_CHARS)
        self.buffer = self.buffer[self.position :] + chunk
        self.position = 0
        self.ended = not chunk
        return bool(chunk)

    def skip_whitespace(self) -> str:
        """The next character that is not whitespace, not consumed; "" at the end."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position] in _WHITESPACE:
                self.position += 1
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self.more():
                return ""

    def first(self) -> str:
        character = self.skip_whitespace()
        if self.buffer.startswith("\ufeff", self.position):
            self.position += 1
            character = self.skip_whitespace()
        return character


def _array(chunks: _Chunks) -> Iterator[tuple[str, object]]:
    decoder = json.JSONDecoder()
    chunks.position += 1  # the "["
    number = 0
    while True:
        character = chunks.skip_whitespace()
        if character in ("]", ""):
            return
        if character == ",":
            chunks.position += 1
            continue
        number += 1
        where = f"entry {number:,}"
        try:
            entry, end = decoder.raw_decode(chunks.buffer, chunks.position)
        except json.JSONDecodeError as error:
            # Most often the element runs past the chunk: read on, up to one entry's size.
            if len(chunks.buffer) - chunks.position <= MAX_ENTRY_CHARS and chunks.more():
                number -= 1
                continue
            long = len(chunks.buffer) - chunks.position > MAX_ENTRY_CHARS
            _skip_element(chunks)
            yield where, _Malformed(f"longer than {MAX_ENTRY_CHARS:,} characters, or not JSON" if long
                                    else f"not JSON ({error.msg})")  # fmt: skip
            continue
        if end - chunks.position > MAX_ENTRY_CHARS:
            entry = _Malformed(f"longer than {MAX_ENTRY_CHARS:,} characters")
        chunks.position = end
        following = chunks.skip_whitespace()
        if following not in (",", "]", ""):
            _skip_element(chunks)
            entry = _Malformed(f"expected ',' or ']' after the entry, got {following!r}")
        yield where, entry


def _skip_element(chunks: _Chunks) -> None:
    """Consumes up to the ',' or ']' that ends the element at the position, minding strings and
    nesting; keeps no more than one chunk in memory however long the element runs."""
    depth, in_string, escaped = 0, False, False
    while True:
        buffer = chunks.buffer
        for index in range(chunks.position, len(buffer)):
            character = buffer[index]
            if in_string:
                if escaped:
                    escaped = False
                elif character == "\\":
                    escaped = True
                elif character == '"':
                    in_string = False
            elif character == '"':
                in_string = True
            elif character in "[{":
                depth += 1
            elif character in "]}":
                if depth == 0:  # the array's own "]"
                    chunks.position = index
                    return
                depth -= 1
            elif character == "," and depth == 0:
                chunks.position = index
                return
        chunks.position = len(buffer)
        if not chunks.more():
            return


def _lines(chunks: _Chunks) -> Iterator[tuple[str, object]]:
    number = 0
    while True:
        newline = chunks.buffer.find("\n", chunks.position)
        if newline < 0:
            if len(chunks.buffer) - chunks.position > MAX_ENTRY_CHARS:
                number += 1
                chunks.position = len(chunks.buffer)  # drop the overlong line, chunk by chunk
                while chunks.more():
                    newline = chunks.buffer.find("\n")
                    chunks.position = len(chunks.buffer) if newline < 0 else newline + 1
                    if newline >= 0:
                        break
                yield f"line {number:,}", _Malformed(f"longer than {MAX_ENTRY_CHARS:,} characters")
                continue
            if chunks.more():
                continue
            newline = len(chunks.buffer)
            if chunks.position >= newline:
                return
        line = chunks.buffer[chunks.position : newline]
        chunks.position = newline + 1
        number += 1
        if not line.strip():
            continue
        try:
            yield f"line {number:,}", json.loads(line)
        except json.JSONDecodeError as error:
            yield f"line {number:,}", _Malformed(f"not JSON ({error.msg})")
