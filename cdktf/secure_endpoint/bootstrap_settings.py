"""The bootstrap stack's settings: only what a brand-new project needs, checked before any synth.

`make bootstrap` reads these alone: it never asks for ALLOWED_IP_RANGES, nor for a MODEL_URI in a
bucket that does not exist yet. Every bucket it creates is held to Cloud Storage's naming rules,
those named after the project too, so that a name Cloud Storage would refuse stops the run here.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from secure_endpoint import grammar
from secure_endpoint.declared import Reading, Setting, boolean
from secure_endpoint.grammar import Invalid, bucket_of
from secure_endpoint.exposure import EXPOSURE, PUBLIC
from secure_endpoint.settings import ALERT_EMAIL, DOMAIN, MODEL_URI, PROJECT_ID, REGION, SettingsError
from training.buckets import bucket_name_problem

__all__ = ["BOOTSTRAP_SETTINGS", "BOOTSTRAP_STACK", "BootstrapSettings", "SettingsError"]

BOOTSTRAP_STACK = "bootstrap"
STATE_BUCKET_SUFFIX = "-tfstate"
# gcloud builds submit stages sources in gs://PROJECT_cloudbuild unless told otherwise.
BUILD_SOURCE_BUCKET_SUFFIX = "_cloudbuild"

# Names of buckets that are created here, not merely read: no dots (a dotted name needs a verified
# domain), 3 to 63 characters.
_NEW_BUCKET = re.compile(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]")


def _new_bucket(value: str) -> str:
    grammar.bucket(value)
    if not _NEW_BUCKET.fullmatch(value):
        raise Invalid(
            "expected a new bucket's name: 3 to 63 lowercase letters, digits, - or _, "
            f"no dots, got {value!r}"
        )
    return value


MODEL_BUCKET = Setting(
    "MODEL_BUCKET",
    "the model bucket `make bootstrap` creates (3 to 63 characters, no dots); `make publish` "
    "writes there",
    _new_bucket,
    shown_default="the bucket of `MODEL_URI` when that is set; required otherwise",
)
STATE_BUCKET = Setting(
    "TF_STATE_BUCKET",
    "the state bucket `make bootstrap` creates; `make deploy` keeps the endpoint's state there",
    _new_bucket,
    shown_default=f"`PROJECT_ID{STATE_BUCKET_SUFFIX}`",
)
BOOTSTRAP_STATE_IN_BUCKET = Setting(
    "BOOTSTRAP_STATE_IN_BUCKET",
    "`true`: the bootstrap's own state lives in `TF_STATE_BUCKET` too",
    boolean,
    False,
    shown_default="`false` (local `terraform.bootstrap.tfstate`)",
)
# In the order the reference lists them; PROJECT_ID, REGION and MODEL_URI as the serving stack reads them.
BOOTSTRAP_SETTINGS = (
    PROJECT_ID, REGION, MODEL_BUCKET, MODEL_URI, STATE_BUCKET, BOOTSTRAP_STATE_IN_BUCKET, EXPOSURE, DOMAIN,
    ALERT_EMAIL,
)  # fmt: skip


@dataclass(frozen=True)
class BootstrapSettings:
    project_id: str
    region: str
    model_bucket: str
    state_bucket: str
    state_in_bucket: bool = False
    # Which APIs the serving stack will need past the public one's (internal_plan.extra_apis).
    exposure: str = PUBLIC
    domain: str | None = None
    # Set: the Monitoring API is enabled too (bootstrap.MONITORING_APIS).
    alert_email: str | None = None

    @property
    def build_source_bucket(self) -> str:
        return f"{self.project_id}{BUILD_SOURCE_BUCKET_SUFFIX}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "BootstrapSettings":
        """The settings, or one SettingsError naming every bad or missing one."""
        read = Reading(environ)
        project_id = read(PROJECT_ID)
        region = read(REGION)
        model_bucket = read(MODEL_BUCKET)
        # MODEL_URI is read only when it stands in for MODEL_BUCKET.
        if model_bucket is None and read.good("MODEL_BUCKET"):
            if read.raw(MODEL_URI):
                uri = read(MODEL_URI)
                model_bucket = bucket_of(uri) if uri else None
                if uri and bucket_name_problem(model_bucket) is None:
                    model_bucket = _model_uri_bucket(read, model_bucket)
            else:
                read.refuse(
                    "MODEL_BUCKET",
                    "required (or set MODEL_URI=gs://bucket/…, whose bucket is used); expected the "
                    "name of the bucket the bootstrap creates for models, for example "
                    "$PROJECT_ID-models, got nothing",
                )
        state_bucket = read(STATE_BUCKET)
        state_in_bucket = read(BOOTSTRAP_STATE_IN_BUCKET)
        exposure, domain, alert_email = read(EXPOSURE), read(DOMAIN), read(ALERT_EMAIL)
        if project_id is not None:
            _check_named_after_project(read, project_id, named_state=state_bucket is not None)
        read.done()
        return cls(
            project_id=project_id,
            region=region,
            model_bucket=model_bucket,
            state_bucket=state_bucket or f"{project_id}{STATE_BUCKET_SUFFIX}",
            state_in_bucket=state_in_bucket,
            exposure=exposure,
            domain=domain,
            alert_email=alert_email,
        )


def _model_uri_bucket(read: Reading, bucket: str) -> str | None:
    """MODEL_URI's bucket, which the bootstrap then creates: held to the rules of a new bucket."""
    try:
        return _new_bucket(bucket)
    except Invalid as error:
        read.refuse("MODEL_URI", f"its bucket is the one the bootstrap creates when MODEL_BUCKET is unset; {error}")
        return None


def _check_named_after_project(read: Reading, project_id: str, *, named_state: bool) -> None:
    if ":" in project_id:
        read.refuse(
            "PROJECT_ID",
            "the bootstrap names its buckets after the project, and a bucket name cannot hold "
            f"the domain of {project_id!r}; expected a project id without a domain",
        )
        return
    derived = [f"{project_id}{BUILD_SOURCE_BUCKET_SUFFIX}"]
    if not named_state and read.good("TF_STATE_BUCKET"):
        derived.insert(0, f"{project_id}{STATE_BUCKET_SUFFIX}")
    for name in derived:
        problem = bucket_name_problem(name)
        if problem:
            read.refuse(
                "PROJECT_ID",
                f"the bootstrap names a bucket after the project, {name!r}, which Cloud Storage "
                f"would refuse: {problem}",
            )
            return
