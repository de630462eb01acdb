"""`make refresh-cloud-ranges`: fresh snapshots of the clouds' published ranges, written atomically.

Google Cloud's and AWS's files have stable URLs and are downloaded; Azure's service tags are
published weekly under a new name (ServiceTags_Public_YYYYMMDD.json, from
https://www.microsoft.com/en-us/download/details.aspx?id=56519), so a downloaded copy is given as a
local file. Each file is checked for its cloud's shape, trimmed as cloud_ranges.py says, written to a
temporary file beside the snapshot and renamed over it: a failed or partial download never leaves a
half-written snapshot. sources.json records where and when each came from, and its version fields.
"""

import json
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from secure_endpoint.cloud_ranges import (
    AZURE,
    CLOUDS,
    DATA,
    SOURCES_FILE,
    Cloud,
    CloudRangesError,
    dumps,
)

TIMEOUT_SECONDS = 60
# The AWS file is about 2 MB, Azure's about 4 MB: anything far bigger is not the file.
MAX_BYTES = 64 * 2**20


def refresh(
    *,
    azure_file: Path | None = None,
    urls: Mapping[str, str] | None = None,
    data: Path = DATA,
    now: datetime | None = None,
) -> list[str]:
    """Refreshes what can be; returns one line per cloud. CloudRangesError lists the failures
    after every cloud has been tried (the others are written)."""
    urls = {cloud.name: cloud.url for cloud in CLOUDS if cloud.url} | dict(urls or {})
    now = now or datetime.now(UTC)
    sources = json.loads((data / SOURCES_FILE).read_text())
    report, failures = [], []
    for cloud in CLOUDS:
        origin = str(azure_file) if cloud is AZURE else urls.get(cloud.name)
        if cloud is AZURE and azure_file is None:
            report.append(
                f"{cloud.name}: kept {cloud.file} (no stable URL: give a downloaded service tags file, AZURE=path)"
            )
            continue
        try:
            raw = _read_local(azure_file) if cloud is AZURE else _download(origin)
            document = _parse(cloud, raw, origin)
            trimmed = cloud.trim(document)
            count = sum(1 for _ in cloud.networks(trimmed))
        except (CloudRangesError, OSError, ValueError, KeyError, TypeError) as error:
            failures.append(f"{cloud.name}: {error}")
            continue
        _write_atomically(data / cloud.file, dumps(trimmed))
        version = {key: document[key] for key in cloud.version_fields}
        sources[cloud.file] = {
            "cloud": cloud.name,
            "published_at": cloud.url
            or "https://www.microsoft.com/en-us/download/details.aspx?id=56519",
            "copied_from": origin,
            "fetched": now.isoformat(timespec="seconds"),
            "version": version,
            "kept": sources.get(cloud.file, {}).get("kept", ""),
            "ranges": count,
        }
        report.append(f"{cloud.name}: wrote {cloud.file}, {count} ranges, {json.dumps(version)}")
    _write_atomically(data / SOURCES_FILE, json.dumps(sources, indent=2) + "\n")
    if failures:
        raise CloudRangesError("; ".join(report + [f"failed: {f}" for f in failures]))
    return report


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        body = response.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise CloudRangesError(
            f"{url} sent more than {MAX_BYTES:,} bytes, which is not the ranges file"
        )
    return body


def _read_local(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(MAX_BYTES + 1)


def _parse(cloud: Cloud, raw: bytes, origin: str) -> dict:
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CloudRangesError(
            f"expected {cloud.name}'s JSON from {origin}, got something else ({error})"
        ) from None
    if not isinstance(document, dict):
        raise CloudRangesError(
            f"expected {cloud.name}'s JSON object from {origin}, got {type(document).__name__}"
        )
    return document


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
