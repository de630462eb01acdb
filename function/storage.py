"""Where model bytes come from: a `gs://bucket/object` URI or a local path.

Both are read under the same two bounds: a deadline for the whole fetch (connect, status line,
headers, every retry and the body; for a local path, which may be a Cloud Storage FUSE mount,
the open and every read) and a size cap checked before the body is read and again while it
streams. google-cloud-storage is imported on first use only; it honours STORAGE_EMULATOR_HOST.
"""

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
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
# Any longer timeout means "no deadline" and is cut to this: longer than a process lives, and
# within what socket timeouts and lock waits accept (about 292 years; 1e12 s raises OverflowError).
_LONGEST_TIMEOUT_SECONDS = 1e9


def is_gcs_uri(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def parse_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/path/to/object` -> ("bucket", "path/to/object")."""
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not is_gcs_uri(uri) or not bucket or not name or name.endswith("/"):
        raise ValueError(f"expected gs://bucket/object, got {uri!r}")
    return bucket, name


def read_model_bytes(uri: str, timeout: float, max_bytes: int) -> bytes:
    """The model file's bytes within `timeout` seconds; every failure is a ModelUnavailable
    naming the URI and the cause."""
    deadline = time.monotonic() + min(timeout, _LONGEST_TIMEOUT_SECONDS)
    if not is_gcs_uri(uri):
        return _by_deadline(lambda: _read_local(uri, max_bytes), deadline, uri, lambda: None)
    connections = _Connections()
    return _by_deadline(
        lambda: _download(uri, deadline, max_bytes, connections), deadline, uri, connections.cut
    )


def _by_deadline(
    fetch: Callable[[], bytes], deadline: float, uri: str, cut: Callable[[], None]
) -> bytes:
    """`fetch()` in a thread of its own, abandoned at `deadline` after `cut()`: a socket timeout
    restarts with every byte received, and a read from a hung mount cannot be interrupted, so
    only a wait on another thread bounds the whole."""
    result: Future[bytes] = Future()

    def run() -> None:
        try:
            result.set_result(fetch())
        except BaseException as error:  # handed over whole to the waiting thread
            result.set_exception(error)

    # A daemon: a fetch stuck past its deadline must not hold the process at exit.
    threading.Thread(target=run, name=f"fetch {uri}", daemon=True).start()
    done, _ = wait([result], timeout=max(deadline - time.monotonic(), 0))
    if not done:
        cut()
        raise _timeout(uri)
    return result.result()


class _Connections:
    """The connections one download opens, so that a download abandoned at its deadline can be
    cut off rather than left reading from a server that trickles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list = []
        self._cut = False

    def track(self, session) -> None:
        """Has `session`'s connection pools report every connection they open to `self`."""
        for adapter in session.adapters.values():
            manager = getattr(adapter, "poolmanager", None)
            if manager is not None:
                manager.pool_classes_by_scheme = {
                    scheme: self._tracking(pool_class)
                    for scheme, pool_class in manager.pool_classes_by_scheme.items()
                }

    def _tracking(self, pool_class: type) -> type:
        connections = self

        class TrackingPool(pool_class):
            def _new_conn(self):
                connection = super()._new_conn()
                connections._add(connection)
                return connection

        return TrackingPool

    def _add(self, connection) -> None:
        with self._lock:
            if self._cut:  # a request begun just before the deadline
                raise ConnectionAbortedError("abandoned at MODEL_LOAD_TIMEOUT")
            self._open.append(connection)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for connection in self._open:
                _shut(connection)


def _shut(connection) -> None:
    # shutdown(), unlike close(), wakes a read blocked on the socket in another thread.
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by its own thread


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
        # In chunks: read(max_bytes + 1) would reserve the whole cap at once, however small the
        # file. One byte past the cap is read because the file may grow after the check.
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(_CHUNK_BYTES, max_bytes + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            chunks.append(chunk)
    except OSError as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: {error.strerror or error}", kind=STORAGE_ERROR
        ) from error
    finally:
        os.close(fd)
    _check_size(size, max_bytes, uri, partial=True)
    return b"".join(chunks)


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


def _download(uri: str, deadline: float, max_bytes: int, connections: _Connections) -> bytes:
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
    connections.track(session)
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
