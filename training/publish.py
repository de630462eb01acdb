"""Publish a model version to the model bucket, never overwriting: `make publish`.

The object is `gs://$MODEL_BUCKET/models/<name>/<version>/model.onnx`, with the name and version the
file carries in its ONNX metadata. Cloud Storage creates it only if it does not exist
(`ifGenerationMatch=0`); when it exists, its checksums decide: the same bytes are already published,
different bytes claiming that version are refused.

Exit status: 0 published (or already published, identically), 1 refused (the version holds other
bytes), 2 bad input or settings, or Cloud Storage failed. The URI to deploy is stdout's only line.
"""

import argparse
import base64
import hashlib
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from function.model import VERSION_KEY
from function.signature import MODEL_NAME_PATTERN, NAME_KEY
from function.settings import DEFAULT_MODEL_URI
from training.buckets import bucket_name_problem

VERSION_PATTERN = re.compile(r"[0-9a-f]{16}")
OBJECT_FILE = "model.onnx"
DEFAULT_TIMEOUT = 60.0

EXIT_PUBLISHED = 0
EXIT_REFUSED = 1
EXIT_FAILED = 2

_CHUNK = 1 << 20


class PublishError(Exception):
    """A publish that did not happen; `exit_status` says why, the message what to do."""

    exit_status = EXIT_FAILED


class VersionConflict(PublishError):
    """The version is published already, with other bytes."""

    exit_status = EXIT_REFUSED


@dataclass(frozen=True)
class PublishSettings:
    bucket: str
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> "PublishSettings":
        raw = environ.get("MODEL_BUCKET", "")
        if not raw.strip():
            raise PublishError(
                "MODEL_BUCKET: required, the model bucket `make bootstrap` created "
                f"(its name, without gs://), got {repr(raw) if raw else 'nothing'}"
            )
        problem = bucket_name_problem(raw)
        if problem:
            raise PublishError(
                f"MODEL_BUCKET: expected a Cloud Storage bucket name, got {raw!r}: {problem}"
            )
        return cls(bucket=raw, timeout=timeout)


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str

    @property
    def object_name(self) -> str:
        return f"models/{self.name}/{self.version}/{OBJECT_FILE}"


def read_identity(path: Path) -> ModelIdentity:
    """The name and version the ONNX file at `path` carries; PublishError naming what is wrong."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        hint = "; run `make train` first" if path == Path(DEFAULT_MODEL_URI) else ""
        raise PublishError(f"model file {path}: expected an ONNX file, got {_what_is(path)}{hint}")
    try:
        proto = onnx.load_model(path, load_external_data=False)
        onnx.checker.check_model(proto)
    except (DecodeError, onnx.checker.ValidationError, OSError, ValueError) as error:
        raise PublishError(
            f"model file {path}: not an ONNX model ({_first_line(error)})"
        ) from error
    props = {prop.key: prop.value for prop in proto.metadata_props}

    name = props.get(NAME_KEY)
    if name is None:
        raise PublishError(
            f"model file {path}: no {NAME_KEY} in its metadata, which names the published path; "
            "re-export it with `make train` or `make export ... NAME=<name>`"
        )
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise PublishError(
            f"model file {path}: {NAME_KEY} must match {MODEL_NAME_PATTERN.pattern}, got {name!r}; "
            "re-export it with `make export ... NAME=<name>`"
        )
    version = props.get(VERSION_KEY)
    if version is None or not VERSION_PATTERN.fullmatch(version):
        got = "nothing" if version is None else repr(version)
        raise PublishError(
            f"model file {path}: {VERSION_KEY} must be 16 lowercase hex characters, got {got}; "
            "re-export it with `make train` or `make export`"
        )
    return ModelIdentity(name=name, version=version)


def _what_is(path: Path) -> str:
    if path.is_dir():
        return "a directory"
    if path.exists():
        return "something that is not a regular file"
    return "no such file"


@dataclass(frozen=True)
class Checksums:
    """As Cloud Storage reports them: base64 of the big-endian CRC32C and of the MD5 digest."""

    size: int
    crc32c: str
    md5: str | None

    @classmethod
    def of_file(cls, path: Path) -> "Checksums":
        import google_crc32c

        crc = google_crc32c.Checksum()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                crc.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        return cls(size=size, crc32c=_b64(crc.digest()), md5=_b64(md5.digest()))

    @classmethod
    def of_blob(cls, blob) -> "Checksums":
        return cls(size=int(blob.size or 0), crc32c=blob.crc32c or "", md5=blob.md5_hash)

    def same_content(self, stored: "Checksums") -> bool:
        # Composite objects carry no MD5; CRC32C and the size still decide.
        md5_agrees = stored.md5 is None or stored.md5 == self.md5
        return stored.size == self.size and stored.crc32c == self.crc32c and md5_agrees

    def __str__(self) -> str:
        return f"{self.size} bytes, crc32c {self.crc32c}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Published:
    uri: str
    identity: ModelIdentity
    checksums: Checksums
    already: bool  # the same bytes were there before this run


def publish(path: Path, settings: PublishSettings) -> Published:
    """Uploads `path` under its own name and version unless that version exists.

    The client is built, and credentials looked up, only once the file has passed.
    VersionConflict when the version holds other bytes; PublishError for every other failure.
    """
    identity = read_identity(path)
    local = Checksums.of_file(path)
    uri = f"gs://{settings.bucket}/{identity.object_name}"
    stored = create_only(path, settings.bucket, identity.object_name, settings.timeout, local)
    if stored is None:
        return Published(uri=uri, identity=identity, checksums=local, already=False)
    if not local.same_content(stored):
        raise VersionConflict(
            f"{uri} already holds other bytes ({stored}) than {path} ({local}) for "
            f"{identity.name} version {identity.version}; a published version never changes: "
            "export the model again, and new bytes get a new version"
        )
    return Published(uri=uri, identity=identity, checksums=local, already=True)


def create_only(
    path: Path,
    bucket_name: str,
    name: str,
    timeout: float,
    local: Checksums,
    content_type: str = "application/octet-stream",
) -> "Checksums | None":
    """Creates `gs://bucket_name/name` from `path` unless the object exists: None once created,
    else the stored object's checksums, for the caller to compare (nothing is ever overwritten).

    PublishError for every failure of Cloud Storage.
    """
    uri = f"gs://{bucket_name}/{name}"
    with _storage_errors(uri, bucket_name):
        from google.api_core import exceptions
        from google.cloud.storage.retry import DEFAULT_RETRY

        # Every call is safe to retry: the upload is conditional, the rest only reads.
        retry = DEFAULT_RETRY.with_timeout(timeout)
        bucket = storage_client().bucket(bucket_name)
        # Looking first spares re-sending a large file only to be told it is there.
        stored = bucket.get_blob(name, timeout=timeout, retry=retry)
        if stored is None:
            try:
                bucket.blob(name).upload_from_filename(
                    str(path),
                    content_type=content_type,
                    if_generation_match=0,
                    crc32c_checksum_value=local.crc32c,
                    timeout=timeout,
                    retry=retry,
                )
                return None
            except exceptions.PreconditionFailed:
                # Published by someone else since the look (or by a retried upload of ours):
                # what is there now decides.
                stored = bucket.get_blob(name, timeout=timeout, retry=retry)
                if stored is None:
                    raise PublishError(f"{uri} changed while publishing; publish again") from None
    return Checksums.of_blob(stored)


@contextmanager
def _storage_errors(uri: str, bucket: str) -> Iterator[None]:
    """Turns the client's exceptions into one-line PublishErrors that say what to do."""
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError

    try:
        yield
    except PublishError:
        raise
    except exceptions.NotFound as error:
        raise PublishError(
            f"cannot publish {uri}: bucket {bucket} does not exist "
            "(`make bootstrap` creates the model bucket)"
        ) from error
    except exceptions.Forbidden as error:
        raise PublishError(
            f"cannot publish {uri}: permission denied on bucket {bucket}; publishing needs "
            "roles/storage.objectCreator and roles/storage.objectViewer there"
        ) from error
    except DefaultCredentialsError as error:
        raise PublishError(
            f"cannot publish {uri}: no Google credentials; "
            "run `gcloud auth application-default login`"
        ) from error
    except Exception as error:  # network failures surface as many unrelated types
        raise PublishError(
            f"cannot publish {uri}: {type(error).__name__}: {_first_line(error)}"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"


def storage_client():
    """The Cloud Storage client; honours STORAGE_EMULATOR_HOST."""
    from google.cloud import storage

    return storage.Client()


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {raw!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", nargs="?", type=Path, default=Path(DEFAULT_MODEL_URI),
        help=f"the ONNX file (default: {DEFAULT_MODEL_URI})",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
        help="seconds each Cloud Storage call may take, retries included",
    )  # fmt: skip
    args = parser.parse_args(argv)

    try:
        settings = PublishSettings.from_env(os.environ, timeout=args.timeout)
        published = publish(args.model, settings)
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    version = f"{published.identity.name} version {published.identity.version}"
    if published.already:
        said = f"{version} is already published with the same bytes"
    else:
        said = f"published {args.model} as {version} ({published.checksums})"
    print(f"{said}; MODEL_URI to deploy:", file=sys.stderr, flush=True)
    print(published.uri)
    return EXIT_PUBLISHED


if __name__ == "__main__":
    sys.exit(main())
