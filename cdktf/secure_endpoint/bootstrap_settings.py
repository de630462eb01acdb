"""The bootstrap stack's settings: only what a brand-new project needs, checked before any synth.

`make bootstrap` reads these alone: it never asks for ALLOWED_IP_RANGES, nor for a MODEL_URI in a
bucket that does not exist yet.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from secure_endpoint.settings import (
    _BUCKET,
    _PROJECT,
    _REGION,
    DEFAULT_REGION,
    SettingsError,
    _bool,
    _model_uri,
    _optional,
    _required,
)

BOOTSTRAP_STACK = "bootstrap"
STATE_BUCKET_SUFFIX = "-tfstate"
# gcloud builds submit stages sources in gs://PROJECT_cloudbuild unless told otherwise.
BUILD_SOURCE_BUCKET_SUFFIX = "_cloudbuild"

# Names of buckets that are created here, not merely read: no dots (a dotted name needs a verified
# domain), 3 to 63 characters, and not one of the README's placeholders.
_NEW_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class BootstrapSettings:
    project_id: str
    region: str
    model_bucket: str
    state_bucket: str
    state_in_bucket: bool = False

    @property
    def build_source_bucket(self) -> str:
        return f"{self.project_id}{BUILD_SOURCE_BUCKET_SUFFIX}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "BootstrapSettings":
        project_id = _required(environ, "PROJECT_ID", _PROJECT, "a Google Cloud project id")
        if ":" in project_id:
            raise SettingsError(
                f"PROJECT_ID: the bootstrap names its buckets after the project, and a bucket name "
                f"cannot hold the domain of {project_id!r}; expected a project id without a domain"
            )
        region = (
            _optional(environ, "REGION", _REGION, "a region such as asia-northeast1")
            or DEFAULT_REGION
        )
        return cls(
            project_id=project_id,
            region=region,
            model_bucket=_model_bucket(environ),
            state_bucket=_new_bucket(environ, "TF_STATE_BUCKET")
            or f"{project_id}{STATE_BUCKET_SUFFIX}",
            state_in_bucket=_bool(environ, "BOOTSTRAP_STATE_IN_BUCKET", False),
        )


def _model_bucket(environ: Mapping[str, str]) -> str:
    bucket = _new_bucket(environ, "MODEL_BUCKET")
    if bucket:
        return bucket
    if environ.get("MODEL_URI", "").strip():
        return _model_uri(environ)[len("gs://") :].split("/", 1)[0]
    raise SettingsError(
        "MODEL_BUCKET: required; expected the name of the bucket the bootstrap creates for models "
        "(for example $PROJECT_ID-models), got nothing"
    )


def _new_bucket(environ: Mapping[str, str], name: str) -> str | None:
    value = _optional(environ, name, _BUCKET, "a Cloud Storage bucket name")
    if value is None:
        return None
    if not _NEW_BUCKET.match(value):
        raise SettingsError(
            f"{name}: expected a new bucket's name: 3 to 63 lowercase letters, digits, - or _, "
            f"no dots, got {value!r}"
        )
    if value.startswith("goog"):
        raise SettingsError(f"{name}: bucket names cannot start with 'goog', got {value!r}")
    return value
