"""Where model bytes come from: a `gs://bucket/object` URI or a local path.

google-cloud-storage is imported on first use only; it honours STORAGE_EMULATOR_HOST.
"""

from pathlib import Path

from function.errors import ModelUnavailable, first_line

GCS_SCHEME = "gs://"


def is_gcs_uri(uri: str) -> bool:
    return uri.startswith(GCS_SCHEME)


def parse_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/path/to/object` -> ("bucket", "path/to/object")."""
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not is_gcs_uri(uri) or not bucket or not name or name.endswith("/"):
        raise ValueError(f"expected gs://bucket/object, got {uri!r}")
    return bucket, name


def read_model_bytes(uri: str, timeout: float) -> bytes:
    """The model file's bytes; every failure is a ModelUnavailable naming the URI and the cause."""
    if not is_gcs_uri(uri):
        try:
            return Path(uri).read_bytes()
        except OSError as error:
            raise ModelUnavailable(f"cannot load model {uri}: {error.strerror or error}") from error
    return _download(uri, timeout)


def _download(uri: str, timeout: float) -> bytes:
    from google.api_core import exceptions
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket, name = parse_gcs_uri(uri)
    # The library's retry waits up to 120 s by default; the settings bound it.
    retry = DEFAULT_RETRY.with_timeout(timeout)
    try:
        blob = _client().bucket(bucket).blob(name)
        return blob.download_as_bytes(timeout=timeout, retry=retry)
    except exceptions.NotFound as error:
        raise ModelUnavailable(f"cannot load model {uri}: no such object") from error
    except exceptions.Forbidden as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: permission denied; the service account needs "
            f"roles/storage.objectViewer on bucket {bucket}"
        ) from error
    except DefaultCredentialsError as error:
        raise ModelUnavailable(
            f"cannot load model {uri}: no Google credentials "
            "(run `gcloud auth application-default login`, or set MODEL_URI to a local path)"
        ) from error
    except Exception as error:  # network failures surface as many unrelated types
        raise ModelUnavailable(
            f"cannot load model {uri}: {type(error).__name__}: {first_line(error)}"
        ) from error


def upload_file(path: Path, uri: str) -> None:
    bucket, name = parse_gcs_uri(uri)
    blob = _client().bucket(bucket).blob(name)
    blob.upload_from_filename(str(path), content_type="application/octet-stream")


def _client():
    from google.cloud import storage

    return storage.Client()

