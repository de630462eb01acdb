"""Where model bytes come from: a `gs://bucket/object` URI or a local path.

Both are read under the same two bounds: a deadline for the whole fetch (connect, every retry
and the body) and a size cap checked before the body is read and again while it streams.
google-cloud-storage is imported on first use only; it honours STORAGE_EMULATOR_HOST.
"""

import json
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote

from function.errors import (
    INVALID_MODEL,
    NOT_FOUND,
    PERMISSION_DENIED,
    STORAGE_ERROR,
    TIMEOUT,
    TOO_LARGE,
    UNREACHABLE,
    ModelUnavailable,
    first_line,
)

GCS_SCHEME = "gs://"
_METADATA_MAX_BYTES = 64 * 1024
_CHUNK_BYTES = 256 * 1024
_FIRST_RETRY_SECONDS = 0.25
_LONGEST_RETRY_SECONDS = 2.0


def is_gcs_uri(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def parse_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/path/to/object` -> ("bucket", "path/to/object")."""
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not is_gcs_uri(uri) or not bucket or not name or name.endswith("/"):
        raise ValueError(f"expected gs://bucket/object, got {uri!r}")
    return bucket, name


def read_model_bytes(uri: str, timeout: float, max_bytes: int) -> bytes:
    """The model file's bytes; every failure is a ModelUnavailable naming the URI and the cause."""
    if not is_gcs_uri(uri):
        return _read_local(uri, max_bytes)
    return _download(uri, time.monotonic() + timeout, max_bytes)


def _read_local(uri: str, max_bytes: int) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the type check below refuses it.
        fd = os.open(uri, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        kind = (
            NOT_FOUND
            if isinstance(error, FileNotFoundError)
            else PERMISSION_DENIED if isinstance(error, PermissionError) else STORAGE_ERROR
        )
        raise ModelUnavailable(
            f"cannot load model {uri}: {error.strerror or error}", kind=kind
        ) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelUnavailable(
                f"cannot load model {uri}: expected a regular file, got {_file_type(info.st_mode)}",
                kind=INVALID_MODEL,
            )
        _check_size(info.st_size, max_bytes, uri)
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(max_bytes + 1)  # the file may grow between the check and the read
    finally:
        os.close(fd)
    _check_size(len(data), max_bytes, uri, partial=True)
    return data


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return f"a file of mode {oct(mode)}"


def _check_size(size: int, max_bytes: int, uri: str, *, partial: bool = False) -> None:
    """`partial`: `size` counts what was read so far, not the whole."""
    if size > max_bytes:
        raise ModelUnavailable(
            f"cannot load model {uri}: expected at most MODEL_MAX_BYTES={max_bytes} bytes, "
            f"got {'more' if partial else size}",
            kind=TOO_LARGE,
        )


class _Transient(Exception):
    """A failure worth another try while the deadline allows: no answer, 429 or 5xx."""

    def __init__(self, cause: str, kind: str):
        super().__init__(cause)
        self.kind = kind


def _download(uri: str, deadline: float, max_bytes: int) -> bytes:
    """The object's size is read first and checked against the cap, then its body is streamed
    under the cap, at that generation so that both describe the same bytes."""
    from google.auth.exceptions import DefaultCredentialsError

    bucket, name = parse_gcs_uri(uri)
    try:
        client = _client()
    except DefaultCredentialsError as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: no Google credentials "
            "(run `gcloud auth application-default login`, or set MODEL_URI to a local path)",
            kind=PERMISSION_DENIED,
        ) from error
    object_url = (
        f"{client.api_endpoint}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
    )
    session = client._http  # adds the service account's token; anonymous under the emulator
    pause = _FIRST_RETRY_SECONDS
    while True:
        try:
            metadata = json.loads(_get(session, object_url, deadline, _METADATA_MAX_BYTES, uri))
            size, generation = int(metadata["size"]), str(int(metadata["generation"]))
            _check_size(size, max_bytes, uri)
            media_url = f"{object_url}?alt=media&generation={generation}"
            return _get(session, media_url, deadline, max_bytes, uri)
        except _Transient as error:
            if time.monotonic() + pause >= deadline:
                raise ModelUnavailable(
                    f"cannot load model {uri}: {error} (gave up within MODEL_LOAD_TIMEOUT)",
                    kind=error.kind,
                ) from error
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_RETRY_SECONDS)
        except (ValueError, KeyError, TypeError) as error:
            raise ModelUnavailable(
                f"cannot load model {uri}: unexpected object metadata ({first_line(error)})",
                kind=STORAGE_ERROR,
            ) from error


def _get(session, url: str, deadline: float, limit: int, uri: str) -> bytes:
    """One GET whose every step, from connect to the last byte, ends by `deadline`."""
    import requests
    import urllib3

    try:
        remaining = _remaining(deadline, uri)
        response = session.request(
            "GET", url, stream=True, timeout=(remaining, remaining), max_allowed_time=remaining
        )
        with response:
            _check_status(response.status_code, uri)
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and len(declared) < 20:
                _check_size(int(declared), limit, uri)
            raw = response.raw
            chunks, size = [], 0
            while True:
                # The deadline is checked between reads, so a server trickling bytes cannot
                # stretch the fetch by answering just within a per-read timeout; and each read
                # waits at most until the deadline (on a kept-alive connection, as Cloud
                # Storage's are; otherwise at most the time that remained when it started).
                remaining = _remaining(deadline, uri)
                connection = raw.connection
                if connection is not None and connection.sock is not None:
                    connection.sock.settimeout(remaining)
                chunk = raw.read1(_CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                _check_size(size, limit, uri, partial=True)
                chunks.append(chunk)
            _remaining(deadline, uri)
            return b"".join(chunks)
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as error:
        if time.monotonic() >= deadline:
            raise _timeout(uri) from error
        raise _Transient(f"{type(error).__name__}: {first_line(error)}", TIMEOUT) from error
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _Transient(f"{type(error).__name__}: {first_line(error)}", UNREACHABLE) from error


def _check_status(status: int, uri: str) -> None:
    if status == 200:
        return
    if status == 404:
        raise ModelUnavailable(f"cannot load model {uri}: no such object", kind=NOT_FOUND)
    if status in (401, 403):
        bucket, _ = parse_gcs_uri(uri)
        raise ModelUnavailable(
            f"cannot load model {uri}: permission denied (HTTP {status}); the service account "
            f"needs roles/storage.objectViewer on bucket {bucket}",
            kind=PERMISSION_DENIED,
        )
    if status == 408 or status == 429 or status >= 500:
        raise _Transient(f"HTTP {status} from Cloud Storage", STORAGE_ERROR)
    raise ModelUnavailable(
        f"cannot load model {uri}: unexpected HTTP {status} from Cloud Storage", kind=STORAGE_ERROR
    )


def _remaining(deadline: float, uri: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timeout(uri)
    return remaining


def _timeout(uri: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"cannot load model {uri}: not fetched within MODEL_LOAD_TIMEOUT", kind=TIMEOUT
    )


def upload_file(path: Path, uri: str) -> None:
    bucket, name = parse_gcs_uri(uri)
    blob = _client().bucket(bucket).blob(name)
    blob.upload_from_filename(str(path), content_type="application/octet-stream")


def _client():
    from google.cloud import storage

    return storage.Client()
