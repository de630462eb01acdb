"""The training job: train, export, gate against production, publish: `python -m training.job`.

Runs the same on Cloud Run Jobs and on a laptop. `TRAIN_ENTRYPOINT=module:function` names a
function of no arguments returning `(estimator, sample, holdout_X, holdout_y)`: the fitted
estimator or pipeline, a DataFrame of rows for the export's parity check, the held-out features
(a DataFrame of named columns) and their labels or targets. The model is exported by
`training.export` (checked against scikit-learn), judged by `training.evaluate` against the
production model at `MODEL_URI`, and, when it passes, published by `training.publish`'s code path
as `gs://$MODEL_BUCKET/models/<name>/<version>/model.onnx` with `evaluation.json` beside it.

stdout's only line is the JSON summary. Exit status: 0 published (or already published, the
same bytes), 1 failed (training raised, export, the production model or Cloud Storage), 2 bad
settings, 3 refused by the gate (nothing written).
"""

import importlib
import json
import math
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from function.settings import DEFAULT_MODEL_LOAD_TIMEOUT, DEFAULT_MODEL_MAX_BYTES
from function.signature import MODEL_NAME_PATTERN
from function.storage import is_gcs_uri, parse_gcs_uri
from training.buckets import bucket_name_problem
from training.evaluate import ALL_METRICS, Gate
from training.job_names import ATTEMPT_VARIABLE, EXECUTION_VARIABLE, summary_object
from training.publish import DEFAULT_TIMEOUT, OBJECT_FILE

DEFAULT_ENTRYPOINT = "training.train:iris"
DEFAULT_MODEL_NAME = "iris"
EVALUATION_FILE = "evaluation.json"

EXIT_PUBLISHED = 0
EXIT_FAILED = 1
EXIT_SETTINGS = 2
EXIT_REFUSED = 3

PUBLISHED = "published"
REFUSED = "refused"
FAILED = "failed"

_ENTRYPOINT = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)"
)


class JobError(Exception):
    """The job stops: the message says why, `exit_status` how it ends."""

    exit_status = EXIT_FAILED


class SettingsError(JobError):
    """Every bad setting, each naming its variable."""

    exit_status = EXIT_SETTINGS

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class JobSettings:
    bucket: str
    production_uri: str | None  # None: a first model, nothing to compare with
    entrypoint: str
    model_name: str
    gate: Gate
    timeout: float = DEFAULT_TIMEOUT
    execution: str | None = None  # Cloud Run's execution, when running as a job's task
    attempt: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "JobSettings":
        """The settings, or SettingsError listing every bad one."""
        problems: list[str] = []

        bucket = environ.get("MODEL_BUCKET", "").strip()
        if not bucket:
            problems.append(
                "MODEL_BUCKET: required, the model bucket `make bootstrap` created "
                "(its name, without gs://), got nothing"
            )
        elif problem := bucket_name_problem(bucket):
            problems.append(
                f"MODEL_BUCKET: expected a Cloud Storage bucket name, got {bucket!r}: {problem}"
            )

        production_uri = environ.get("MODEL_URI", "").strip() or None
        if production_uri is not None and is_gcs_uri(production_uri):
            try:
                production_bucket, _ = parse_gcs_uri(production_uri)
            except ValueError as error:
                problems.append(
                    f"MODEL_URI: {error} (the production model; unset for a first model)"
                )
            else:
                if problem := bucket_name_problem(production_bucket):
                    problems.append(
                        f"MODEL_URI: expected gs://bucket/object, got {production_uri!r}: {problem}"
                    )

        entrypoint = environ.get("TRAIN_ENTRYPOINT", "").strip() or DEFAULT_ENTRYPOINT
        found = _ENTRYPOINT.fullmatch(entrypoint)
        if not found:
            problems.append(
                f"TRAIN_ENTRYPOINT: expected module:function, such as {DEFAULT_ENTRYPOINT}, "
                f"got {entrypoint!r}"
            )

        model_name = environ.get("MODEL_NAME", "").strip()
        if model_name:
            if not MODEL_NAME_PATTERN.fullmatch(model_name):
                problems.append(
                    "MODEL_NAME: expected 1 to 63 characters of a-z, 0-9, '.', '_' or '-', "
                    "starting "
                    f"with a letter or digit (it is part of the published path), got {model_name!r}"
                )
        elif entrypoint == DEFAULT_ENTRYPOINT:
            model_name = DEFAULT_MODEL_NAME
        elif found:
            model_name = found.group(1).rsplit(".", 1)[-1]
            if not MODEL_NAME_PATTERN.fullmatch(model_name):
                problems.append(
                    f"MODEL_NAME: unset, and the entry point's module name {model_name!r} is not a "
                    "model name (1 to 63 characters of a-z, 0-9, '.', '_' or '-'): set MODEL_NAME"
                )

        metric = environ.get("METRIC", "").strip() or None
        if metric is not None and metric not in ALL_METRICS:
            problems.append(
                f"METRIC: expected one of {list(ALL_METRICS)} (accuracy or log_loss for a "
                f"classifier, r2 or rmse for a regressor), got {metric!r}"
            )
        min_score = _number(environ, "MIN_SCORE", problems, "a number, the worst figure accepted")
        max_regression = _number(
            environ, "MAX_REGRESSION", problems, "a number of at least 0", minimum=0.0
        )

        execution = environ.get(EXECUTION_VARIABLE, "").strip() or None
        attempt_text = environ.get(ATTEMPT_VARIABLE, "").strip() or "0"
        attempt = int(attempt_text) if attempt_text.isascii() and attempt_text.isdigit() else 0

        if problems:
            raise SettingsError(problems)
        return cls(
            bucket=bucket,
            production_uri=production_uri,
            entrypoint=entrypoint,
            model_name=model_name,
            gate=Gate(metric=metric, min_score=min_score, max_regression=max_regression),
            execution=execution,
            attempt=attempt,
        )


def _number(
    environ: Mapping[str, str],
    name: str,
    problems: list[str],
    expected: str,
    minimum: float | None = None,
) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        problems.append(f"{name}: expected {expected}, got {raw!r}")
        return None
    return value


def load(environ: Mapping[str, str]) -> tuple[JobSettings, Callable[[], Any]]:
    """The settings and the training function, or SettingsError listing every problem: the
    entry point is imported to check it even when another setting is bad."""
    problems: list[str] = []
    settings = None
    try:
        settings = JobSettings.from_env(environ)
    except SettingsError as error:
        problems.extend(error.problems)
    entrypoint = environ.get("TRAIN_ENTRYPOINT", "").strip() or DEFAULT_ENTRYPOINT
    train = None
    if _ENTRYPOINT.fullmatch(entrypoint):
        try:
            train = resolve(entrypoint)
        except SettingsError as error:
            problems.extend(error.problems)
    if problems or settings is None or train is None:
        raise SettingsError(problems)
    return settings, train


def resolve(entrypoint: str) -> Callable[[], Any]:
    """The function `module:function` names; SettingsError naming TRAIN_ENTRYPOINT when there is
    none. An error raised by the module's own code at import propagates, as training's would."""
    module_name, _, function_name = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (
            module_name == error.name or module_name.startswith(error.name + ".")
        ):
            raise SettingsError(
                [
                    f"TRAIN_ENTRYPOINT: no module {error.name!r} to import for {entrypoint!r} "
                    f"(modules are found from the working directory and the installed packages)"
                ]
            ) from None
        _import_failed(module_name, error)
    except Exception as error:
        _import_failed(module_name, error)
    function = getattr(module, function_name, None)
    if function is None:
        raise SettingsError(
            [
                f"TRAIN_ENTRYPOINT: module {module_name!r} has no {function_name!r}, "
                f"got {entrypoint!r}"
            ]
        )
    if not callable(function):
        raise SettingsError(
            [
                f"TRAIN_ENTRYPOINT: expected a function, "
                f"{entrypoint!r} is a {type(function).__name__}"
            ]
        )
    return function


def _import_failed(module_name: str, error: Exception) -> None:
    traceback.print_exc()
    raise JobError(
        f"importing {module_name} (TRAIN_ENTRYPOINT) raised "
        f"{type(error).__name__}: {_first_line(error)}"
    ) from error


@dataclass(frozen=True)
class Outcome:
    exit_status: int
    summary: dict[str, Any]


def new_summary(model_name: str | None, production_uri: str | None) -> dict[str, Any]:
    """The summary line's fields, every one present from the start (null until known)."""
    return {
        "name": model_name,
        "version": None,
        "model_uri": None,
        "production_uri": production_uri,
        "metric": None,
        "metrics": None,
        "verdict": None,
    }


def run(settings: JobSettings, train: Callable[[], Any], summary: dict[str, Any]) -> Outcome:
    """Train, export, evaluate, publish, filling in `summary` as it goes. Returns the outcome;
    raises JobError to stop (`summary` then holds what was known)."""
    from function.model import load_model, model_from_bytes
    from training.evaluate import EvaluationError, evaluate
    from training.export import ExportError, build

    try:
        returned = train()
    except Exception as error:
        traceback.print_exc()
        raise JobError(
            f"training ({settings.entrypoint}) raised {type(error).__name__}: {_first_line(error)}"
        ) from error
    estimator, sample, holdout_X, holdout_y = _unpack(returned, settings.entrypoint)

    try:
        exported = build(estimator, sample, name=settings.model_name)
    except ExportError as error:
        raise JobError(f"export: {error}") from error
    prefix = f"models/{settings.model_name}/{exported.version}/"
    uri = f"gs://{settings.bucket}/{prefix}{OBJECT_FILE}"
    summary["version"] = exported.version
    candidate = model_from_bytes(exported.data, uri)

    production = None
    if settings.production_uri is not None:
        from function.errors import NOT_FOUND, ModelUnavailable

        try:
            production = load_model(
                settings.production_uri, DEFAULT_MODEL_LOAD_TIMEOUT, DEFAULT_MODEL_MAX_BYTES
            )
        except ModelUnavailable as error:
            hint = (
                "; for a first model, with nothing in production yet, leave MODEL_URI unset"
                if error.kind == NOT_FOUND
                else ""
            )
            raise JobError(
                f"MODEL_URI: cannot read the production model to compare with: {error.detail}{hint}"
            ) from error

    try:
        evaluation = evaluate(candidate, production, holdout_X, holdout_y, settings.gate)
    except EvaluationError as error:
        raise JobError(f"evaluation: {error}") from error
    except ValueError as error:  # METRIC does not fit the task
        raise SettingsError([str(error)]) from error
    summary["metric"] = evaluation.metric
    summary["metrics"] = {
        "candidate": evaluation.candidate["metrics"],
        "production": (evaluation.production or {}).get("metrics"),
    }
    summary["reasons"] = list(evaluation.reasons)
    for reason in evaluation.reasons:
        print(f"{'gate' if evaluation.passed else 'refused'}: {reason}", file=sys.stderr)
    if not evaluation.passed:
        summary["verdict"] = REFUSED
        return Outcome(EXIT_REFUSED, summary)

    already = _publish(settings, prefix, exported.data, evaluation.document(), exported.version)
    summary.update(model_uri=uri, verdict=PUBLISHED, already_published=already)
    said = "already published with the same bytes" if already else "published"
    print(
        f"{settings.model_name} version {exported.version} {said}: MODEL_URI={uri}", file=sys.stderr
    )
    return Outcome(EXIT_PUBLISHED, summary)


def _unpack(returned: Any, entrypoint: str) -> tuple[Any, Any, Any, Any]:
    if not isinstance(returned, tuple) or len(returned) != 4:
        got = (
            f"a tuple of {len(returned)}"
            if isinstance(returned, tuple)
            else type(returned).__name__
        )
        raise JobError(
            f"training ({entrypoint}): expected the tuple "
            "(estimator, sample, holdout_X, holdout_y), "
            f"got {got}"
        )
    return returned


def _publish(
    settings: JobSettings, prefix: str, model: bytes, evaluation: bytes, version: str
) -> bool:
    """evaluation.json, then model.onnx, each created only if absent: a version whose model is
    there always has its evaluation. True when the model was there already, with these bytes.

    A retried attempt finds what the first wrote: the same model bytes count as published, and an
    evaluation.json of the same model version (its figures could differ in the last digit on
    another machine) is kept as the first attempt wrote it.
    """
    from training.publish import (
        Checksums,
        PublishError,
        PublishSettings,
        create_only,
        publish,
    )

    with tempfile.TemporaryDirectory() as directory:
        evaluation_path = Path(directory) / EVALUATION_FILE
        evaluation_path.write_bytes(evaluation)
        model_path = Path(directory) / OBJECT_FILE
        model_path.write_bytes(model)
        name = prefix + EVALUATION_FILE
        try:
            local = Checksums.of_file(evaluation_path)
            stored = create_only(
                evaluation_path, settings.bucket, name, settings.timeout, local, "application/json"
            )
            if stored is not None and not local.same_content(stored):
                _keep_stored_evaluation(settings, name, version)
            published = publish(model_path, PublishSettings(settings.bucket, settings.timeout))
        except PublishError as error:  # VersionConflict among them
            raise JobError(str(error)) from error
    return published.already


def _keep_stored_evaluation(settings: JobSettings, name: str, version: str) -> None:
    from training.publish import PublishError, storage_client

    uri = f"gs://{settings.bucket}/{name}"
    try:
        stored = json.loads(
            storage_client()
            .bucket(settings.bucket)
            .blob(name)
            .download_as_bytes(timeout=settings.timeout)
        )
        stored_version = stored["candidate"]["version"]
    except Exception as error:
        raise PublishError(
            f"{uri} exists with other content and cannot be read "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from error
    if stored_version != version:
        raise PublishError(
            f"{uri} already holds the evaluation of version {stored_version!r}, not {version!r}; "
            "a published version never changes"
        )
    print(
        f"note: {uri} was written by an earlier run for this version and is kept", file=sys.stderr
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _write_summary(settings: JobSettings, summary: dict[str, Any]) -> None:
    """On Cloud Run, the summary also goes to gs://$MODEL_BUCKET/jobs/<execution>/attempt-<n>.json,
    where `make train-job` reads it: the execution's logs are not reachable through the Run API."""
    from training.publish import Checksums, PublishError, create_only

    name = summary_object(settings.execution, settings.attempt)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "summary.json"
        path.write_bytes(_summary_line(summary).encode() + b"\n")
        try:
            create_only(
                path,
                settings.bucket,
                name,
                settings.timeout,
                Checksums.of_file(path),
                "application/json",
            )
        except PublishError as error:
            print(
                f"warning: the summary was not saved to gs://{settings.bucket}/{name}: {error}",
                file=sys.stderr,
            )


def _summary_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, allow_nan=False)


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    settings = None
    summary = new_summary(
        environ.get("MODEL_NAME", "").strip() or None, environ.get("MODEL_URI", "").strip() or None
    )
    try:
        settings, train = load(environ)
        summary = new_summary(settings.model_name, settings.production_uri)
        outcome = run(settings, train, summary)
    except JobError as error:
        problems = error.problems if isinstance(error, SettingsError) else [str(error)]
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        summary.update(verdict=FAILED, error="; ".join(problems))
        outcome = Outcome(error.exit_status, summary)
    except Exception as error:  # a fault of this program: its traceback, and still a summary
        traceback.print_exc()
        summary.update(verdict=FAILED, error=f"{type(error).__name__}: {_first_line(error)}")
        outcome = Outcome(EXIT_FAILED, summary)
    outcome.summary["exit_status"] = outcome.exit_status
    if settings is not None and settings.execution is not None:
        _write_summary(settings, outcome.summary)
    print(_summary_line(outcome.summary), flush=True)
    return outcome.exit_status


if __name__ == "__main__":
    sys.exit(main())
