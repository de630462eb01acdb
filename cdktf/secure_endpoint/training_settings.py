"""The training job's settings (`TRAIN_JOB=true`): declared here, read with the serving stack's.

The job runs `python -m training.job` (training/job.py) on Cloud Run Jobs; these settings size
it, say what it trains and how it is judged, and when it runs. Every string among them is held to
its grammar before it reaches Terraform, as the endpoint's are.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from secure_endpoint import grammar
from secure_endpoint.declared import Reading, Setting, boolean, whole_number
from secure_endpoint.grammar import Invalid

# What training/job.py accepts, repeated here because the job's module loads scikit-learn and
# onnxruntime: tests/test_training_job_infra.py holds the two to the same values.
DEFAULT_ENTRYPOINT = "training.train:iris"
ENTRYPOINT_PATTERN = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)"
)
MODEL_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
METRICS = ("accuracy", "log_loss", "r2", "rmse")

# Cloud Run jobs take whole CPUs only, each with its own memory range, in MiB
# (https://cloud.google.com/run/docs/configuring/jobs/cpu and .../jobs/memory-limits).
GIB = 1024
MEMORY_RANGES = {1: (512, 4 * GIB), 2: (512, 8 * GIB), 4: (2 * GIB, 16 * GIB), 6: (4 * GIB, 24 * GIB), 8: (4 * GIB, 32 * GIB)}
DEFAULT_CPU = 1
# scikit-learn, onnxruntime and a copy of the held-out set each: 512 MiB is tight for anything but iris.
DEFAULT_MEMORY = "2Gi"
# A task's attempt is stopped after this long; Cloud Run jobs allow up to 24 hours (GA).
DEFAULT_TIMEOUT_SECONDS = 3600
MAX_TIMEOUT_SECONDS = 24 * 3600
# A failed task runs once more: the job's writes are create-only and a retry's are its own
# (training/job.py), so a second attempt cannot fail on what the first one wrote.
MAX_RETRIES = 1
SCHEDULE_TIME_ZONE = "Etc/UTC"

_MEMORY = re.compile(r"([0-9]{1,6})(Mi|Gi)")
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}),
    ("day of week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)
_CRON_ITEM = re.compile(r"(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?")


def cpu(raw: str) -> int:
    if raw not in {str(n) for n in MEMORY_RANGES}:
        raise Invalid(
            f"expected whole CPUs, one of {', '.join(map(str, MEMORY_RANGES))} (Cloud Run jobs "
            f"take no fractions), got {raw!r}"
        )
    return int(raw)


def memory(raw: str) -> str:
    """`512Mi`, `2Gi`: a Kubernetes quantity in binary units, as Cloud Run takes it."""
    if not _MEMORY.fullmatch(raw) or mebibytes(raw) == 0:
        raise Invalid(f"expected an amount of memory such as 512Mi or 4Gi, got {raw!r}")
    return raw


def mebibytes(quantity: str) -> int:
    number, unit = _MEMORY.fullmatch(quantity).groups()
    return int(number) * (GIB if unit == "Gi" else 1)


def entrypoint(raw: str) -> str:
    if not ENTRYPOINT_PATTERN.fullmatch(raw):
        raise Invalid(f"expected module:function, such as {DEFAULT_ENTRYPOINT}, got {raw!r}")
    return raw


def model_name(raw: str) -> str:
    if not MODEL_NAME_PATTERN.fullmatch(raw):
        raise Invalid(
            "expected 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or "
            f"digit (it is part of the published path), got {raw!r}"
        )
    return raw


def metric(raw: str) -> str:
    if raw not in METRICS:
        raise Invalid(
            f"expected one of {', '.join(METRICS)} (accuracy or log_loss for a classifier, r2 or "
            f"rmse for a regressor), got {raw!r}"
        )
    return raw


def number(minimum: float | None = None) -> Callable[[str], float]:
    expected = "a number" if minimum is None else f"a number of at least {minimum:g}"

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            raise Invalid(f"expected {expected}, got {raw!r}")
        return value

    return parse


def cron(raw: str) -> str:
    """Five fields, minute hour day-of-month month day-of-week, as Cloud Scheduler reads them."""
    fields = raw.split()
    expected = "a cron schedule of 5 fields, minute hour day-of-month month day-of-week, such as '0 3 * * 1'"
    if len(fields) != len(_CRON_FIELDS):
        raise Invalid(f"expected {expected}, got {len(fields)} field(s): {raw!r}")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if not match:
                raise Invalid(f"expected {expected}; the {name} field {text!r} is not one")
            span, step = match.groups()
            ends = [] if span == "*" else span.split("-")
            values = [int(end) if end.isdigit() else names.get(end.upper(), -1) for end in ends]
            if any(not low <= value <= high for value in values) or (step is not None and int(step) == 0):
                raise Invalid(f"expected {expected}; the {name} field {text!r} is outside {low}-{high}")
    return " ".join(fields)


TRAIN_JOB = Setting(
    "TRAIN_JOB",
    "`true`: the training job `inference-train` (Cloud Run Jobs, `python -m training.job`) and "
    "its service account, which may create, never overwrite or delete, under `models/` and "
    "`jobs/` of `MODEL_BUCKET`; `make train-job` runs it",
    boolean, False,
)  # fmt: skip
TRAIN_IMAGE = Setting(
    "TRAIN_IMAGE",
    "the training job's image (`Dockerfile.train`, built beside the service's); a tag in "
    "Artifact Registry is resolved to its digest at plan time",
    grammar.image,
    shown_default="`REGION-docker.pkg.dev/PROJECT_ID/inference-on-secure-cloud-run/inference-train:latest`",
)
MODEL_BUCKET = Setting(
    "MODEL_BUCKET",
    "with `TRAIN_JOB`: the bucket the job publishes to (the bootstrap's model bucket, with "
    "uniform bucket-level access: its grants carry IAM conditions)",
    grammar.bucket,
    shown_default="the bucket of `MODEL_URI`",
)
TRAIN_ENTRYPOINT = Setting(
    "TRAIN_ENTRYPOINT",
    "with `TRAIN_JOB`: the training function, `module:function`, in the training image",
    entrypoint, DEFAULT_ENTRYPOINT,
)  # fmt: skip
MODEL_NAME = Setting(
    "MODEL_NAME",
    "with `TRAIN_JOB`: the published model's name",
    model_name,
    shown_default="the entry point's module name, `iris` for the default",
)
METRIC = Setting(
    "METRIC", "with `TRAIN_JOB`: the gate's metric, `accuracy`, `log_loss`, `r2` or `rmse`", metric,
    shown_default="`accuracy` for a classifier, `r2` for a regressor",
)  # fmt: skip
MIN_SCORE = Setting(
    "MIN_SCORE", "with `TRAIN_JOB`: the worst figure of `METRIC` the gate accepts", number(),
    shown_default="unset (no floor)",
)  # fmt: skip
MAX_REGRESSION = Setting(
    "MAX_REGRESSION", "with `TRAIN_JOB`: how much worse than production the gate accepts",
    number(0.0), shown_default="the job's own (training/evaluate.py)",
)  # fmt: skip
TRAIN_DATA_BUCKET = Setting(
    "TRAIN_DATA_BUCKET",
    "with `TRAIN_JOB`: a bucket the job's account may read (objectViewer), for the training data",
    grammar.bucket,
)
TRAIN_CPU = Setting(
    "TRAIN_CPU",
    f"with `TRAIN_JOB`: whole CPUs of the job's task, {', '.join(map(str, MEMORY_RANGES))}",
    cpu, DEFAULT_CPU,
)  # fmt: skip
TRAIN_MEMORY = Setting(
    "TRAIN_MEMORY",
    "with `TRAIN_JOB`: the task's memory, such as `4Gi`: 512Mi to 4Gi with 1 CPU, to 8Gi with "
    "2, 2Gi to 16Gi with 4, 4Gi to 24Gi with 6, 4Gi to 32Gi with 8",
    memory, DEFAULT_MEMORY,
)  # fmt: skip
TRAIN_TIMEOUT = Setting(
    "TRAIN_TIMEOUT",
    f"with `TRAIN_JOB`: seconds one attempt of the task may run, 60 to {MAX_TIMEOUT_SECONDS}",
    whole_number(60, MAX_TIMEOUT_SECONDS), DEFAULT_TIMEOUT_SECONDS,
)  # fmt: skip
TRAIN_SCHEDULE = Setting(
    "TRAIN_SCHEDULE",
    "with `TRAIN_JOB`: a cron schedule (5 fields, UTC), such as `0 3 * * 1`; a Cloud Scheduler "
    "job then starts the training job, as an account that may run that job and nothing else",
    cron,
)

TRAINING_SETTINGS = (
    TRAIN_JOB, TRAIN_IMAGE, MODEL_BUCKET, TRAIN_ENTRYPOINT, MODEL_NAME, METRIC, MIN_SCORE,
    MAX_REGRESSION, TRAIN_DATA_BUCKET, TRAIN_CPU, TRAIN_MEMORY, TRAIN_TIMEOUT, TRAIN_SCHEDULE,
)  # fmt: skip


@dataclass(frozen=True)
class TrainingSettings:
    image: str
    model_bucket: str
    entrypoint: str = DEFAULT_ENTRYPOINT
    model_name: str | None = None
    metric: str | None = None
    min_score: float | None = None
    max_regression: float | None = None
    data_bucket: str | None = None
    cpu: int = DEFAULT_CPU
    memory: str = DEFAULT_MEMORY
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    schedule: str | None = None

    def job_environment(self) -> dict[str, str]:
        """What the job reads (training/job.py) beyond MODEL_URI: the gate's settings only when set."""
        found = {"MODEL_BUCKET": self.model_bucket, "TRAIN_ENTRYPOINT": self.entrypoint}
        optional = {
            "MODEL_NAME": self.model_name,
            "METRIC": self.metric,
            "MIN_SCORE": None if self.min_score is None else repr(self.min_score),
            "MAX_REGRESSION": None if self.max_regression is None else repr(self.max_regression),
        }
        found.update({name: value for name, value in optional.items() if value is not None})
        return found


def read_training(read: Reading, *, default_image: str, model_uri: str | None) -> TrainingSettings | None:
    """The job's settings when TRAIN_JOB is true, else None; problems are kept in `read`."""
    values = {setting.name: read(setting) for setting in TRAINING_SETTINGS}
    if not values["TRAIN_JOB"]:
        if read.raw(TRAIN_SCHEDULE) and read.good("TRAIN_JOB", "TRAIN_SCHEDULE"):
            read.refuse(
                "TRAIN_SCHEDULE",
                f"expected only with TRAIN_JOB=true, which makes the job it starts; got "
                f"{read.raw(TRAIN_SCHEDULE)!r} with TRAIN_JOB unset or false",
            )
        return None
    cpus, amount = values["TRAIN_CPU"], values["TRAIN_MEMORY"]
    if read.good("TRAIN_CPU", "TRAIN_MEMORY"):
        low, high = MEMORY_RANGES[cpus]
        if not low <= mebibytes(amount) <= high:
            read.refuse(
                "TRAIN_MEMORY",
                f"expected {_quantity(low)} to {_quantity(high)} with TRAIN_CPU={cpus} (Cloud Run "
                f"jobs' range for {cpus} CPU), got {amount}",
            )
    bucket = values["MODEL_BUCKET"] or (grammar.bucket_of(model_uri) if model_uri else None)
    return TrainingSettings(
        image=values["TRAIN_IMAGE"] or default_image,
        model_bucket=bucket,
        entrypoint=values["TRAIN_ENTRYPOINT"],
        model_name=values["MODEL_NAME"],
        metric=values["METRIC"],
        min_score=values["MIN_SCORE"],
        max_regression=values["MAX_REGRESSION"],
        data_bucket=values["TRAIN_DATA_BUCKET"],
        cpu=cpus,
        memory=amount,
        timeout_seconds=values["TRAIN_TIMEOUT"],
        schedule=values["TRAIN_SCHEDULE"],
    )


def _quantity(mib: int) -> str:
    return f"{mib // GIB}Gi" if mib % GIB == 0 else f"{mib}Mi"
