"""Start one execution of the training job now and wait for its end: `make train-job`.

The job is `inference-train` (`training.job_names.JOB_NAME`) in REGION of PROJECT_ID, started
through the Cloud Run Admin API (`JobsClient.run_job`) with Application Default Credentials.
Prints how the execution ended and where its logs are on stderr, and the job's own summary line
on stdout: each task attempt leaves it at gs://MODEL_BUCKET/jobs/<execution>/attempt-<n>.json
(the bucket the job's MODEL_BUCKET names), since logs are not reachable through the Run API.

Exit status: 0 the model was published (or already was), 3 the gate refused it, 1 the execution
failed otherwise (its logs say why), 2 it could not be started or followed (settings,
credentials, the API, or still running after TRAIN_JOB_WAIT seconds).
"""

import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training.job_names import JOB_NAME, SUMMARIES_PREFIX, summary_object

DEFAULT_REGION = "asia-northeast1"  # the serving stack's default
DEFAULT_WAIT_SECONDS = 24 * 3600.0  # a Cloud Run job task runs at most 24 hours
FIRST_POLL_SECONDS = 2.0
LONGEST_POLL_SECONDS = 30.0
LOGIN = "gcloud auth application-default login"

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_REFUSED = 3  # as training.job's

_PROJECT = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")


class RunError(Exception):
    """The execution could not be started or followed: one sentence saying what to do."""


@dataclass(frozen=True)
class RunSettings:
    project: str
    region: str = DEFAULT_REGION
    wait_seconds: float = DEFAULT_WAIT_SECONDS

    @property
    def job(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/jobs/{JOB_NAME}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "RunSettings":
        problems = []
        project = environ.get("PROJECT_ID", "").strip()
        if not _PROJECT.fullmatch(project):
            problems.append(
                f"PROJECT_ID: expected a Google Cloud project id, got {project!r}"
                if project
                else "PROJECT_ID: required, the project the job was deployed to, got nothing"
            )
        region = environ.get("REGION", "").strip() or DEFAULT_REGION
        if not _REGION.fullmatch(region):
            problems.append(f"REGION: expected a region such as {DEFAULT_REGION}, got {region!r}")
        raw_wait = environ.get("TRAIN_JOB_WAIT", "").strip()
        wait = DEFAULT_WAIT_SECONDS
        if raw_wait:
            try:
                wait = float(raw_wait)
            except ValueError:
                wait = math.nan
            if not (math.isfinite(wait) and wait > 0):
                problems.append(
                    f"TRAIN_JOB_WAIT: expected a positive number of seconds, got {raw_wait!r}"
                )
        if problems:
            raise RunError("; ".join(problems))
        return cls(project=project, region=region, wait_seconds=wait)


class CloudRun:
    """The Cloud Run Admin API's jobs and executions (REST), and Cloud Storage for summaries."""

    def __init__(self, *, credentials: Any = None, api_endpoint: str | None = None):
        from google.cloud import run_v2

        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        common = {"credentials": credentials, "transport": "rest", "client_options": options}
        self.jobs = run_v2.JobsClient(**common)
        self.executions = run_v2.ExecutionsClient(**common)

    @classmethod
    def with_default_credentials(cls) -> "CloudRun":
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        except DefaultCredentialsError as error:
            path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if path:
                raise RunError(
                    f"the credentials file GOOGLE_APPLICATION_CREDENTIALS={path} cannot be used "
                    f"({_first_line(error)}): point it at a valid key file, "
                    f"or unset it and run `{LOGIN}`"
                ) from None
            raise RunError(f"no Google credentials found: run `{LOGIN}`") from None
        return cls(credentials=credentials)


@dataclass(frozen=True)
class Ended:
    execution: Any  # run_v2.Execution
    summary: dict[str, Any] | None
    summary_uri: str | None

    @property
    def short_name(self) -> str:
        return self.execution.name.rsplit("/", 1)[-1]

    @property
    def succeeded(self) -> bool:
        execution = self.execution
        return (
            execution.task_count > 0
            and execution.succeeded_count == execution.task_count
            and execution.failed_count == 0
        )

    @property
    def exit_status(self) -> int:
        if self.succeeded:
            return EXIT_SUCCEEDED
        if self.summary is not None and self.summary.get("exit_status") == EXIT_REFUSED:
            return EXIT_REFUSED
        return EXIT_FAILED


def run_once(
    cloud_run: CloudRun, settings: RunSettings, *, first_poll: float = FIRST_POLL_SECONDS
) -> Ended:
    """Starts an execution, waits for its end, and reads the summary its last attempt left."""
    from concurrent.futures import TimeoutError as StillRunning

    from google.api_core import exceptions
    from google.api_core.future.polling import DEFAULT_POLLING

    operation = _call(settings, "start", lambda: cloud_run.jobs.run_job(name=settings.job))
    started = operation.metadata
    name = started.name if started is not None and started.name else None
    if name:
        print(
            f"started execution {name.rsplit('/', 1)[-1]} of {JOB_NAME}; waiting for its end",
            file=sys.stderr,
        )
    polling = DEFAULT_POLLING.with_delay(
        initial=first_poll, maximum=LONGEST_POLL_SECONDS, multiplier=1.5
    ).with_timeout(settings.wait_seconds)
    try:
        execution = operation.result(timeout=settings.wait_seconds, polling=polling)
    except StillRunning:
        raise RunError(
            f"the execution {name or '(unnamed)'} is still running after TRAIN_JOB_WAIT="
            f"{settings.wait_seconds:g} seconds; follow it with `gcloud run jobs executions "
            f"describe {(name or '').rsplit('/', 1)[-1]} --region {settings.region} "
            f"--project {settings.project}`"
        ) from None
    except exceptions.GoogleAPICallError as error:
        # A failed execution ends its operation with an error: the execution itself says more.
        current = operation.metadata
        if current is None or not current.name:
            raise RunError(
                f"the execution of {JOB_NAME} failed: {error.message or error}"
            ) from None
        execution = _call(
            settings, "read the execution of",
            lambda: cloud_run.executions.get_execution(name=current.name),
        )  # fmt: skip
    summary, uri = _summary(execution)
    return Ended(execution=execution, summary=summary, summary_uri=uri)


def _call(settings: RunSettings, what: str, call):
    import requests
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    where = f"{JOB_NAME} in {settings.region} of project {settings.project}"
    try:
        return call()
    except exceptions.NotFound:
        raise RunError(
            f"cannot {what} the job: there is no Cloud Run job {where}; deploy it first"
        ) from None
    except exceptions.Forbidden:
        raise RunError(
            f"cannot {what} the job {where}: permission denied; your account needs "
            "roles/run.developer (or roles/run.invoker on the job) there"
        ) from None
    except (auth_exceptions.RefreshError, exceptions.Unauthorized) as error:
        raise RunError(
            f"Google refused your credentials ({_first_line(error)}); run `{LOGIN}` again"
        ) from None
    except exceptions.GoogleAPICallError as error:
        raise RunError(f"cannot {what} the job {where}: {error.message or error}") from None
    except (auth_exceptions.TransportError, requests.RequestException) as error:
        raise RunError(
            f"cannot {what} the job {where}: the Cloud Run Admin API could not be reached "
            f"({_first_line(error)})"
        ) from None


def _summary(execution) -> tuple[dict[str, Any] | None, str | None]:
    """The summary the execution's last task attempt wrote, and where; (None, why) if none."""
    bucket = _env_of(execution, "MODEL_BUCKET")
    if not bucket:
        return None, None
    short = execution.name.rsplit("/", 1)[-1]
    attempts = execution.template.max_retries + 1 if execution.template else 1
    from training.publish import storage_client

    try:
        client_bucket = storage_client().bucket(bucket)
        for attempt in reversed(range(attempts)):
            name = summary_object(short, attempt)
            blob = client_bucket.get_blob(name)
            if blob is not None:
                return json.loads(blob.download_as_bytes()), f"gs://{bucket}/{name}"
    except Exception as error:  # credentials, permissions, network: said, not fatal
        where = f"gs://{bucket}/{SUMMARIES_PREFIX}{short}/"
        print(
            f"warning: cannot read the job's summary from {where}: "
            f"{type(error).__name__}: {_first_line(error)}",
            file=sys.stderr,
        )
    return None, None


def _env_of(execution, variable: str) -> str | None:
    template = execution.template
    for container in template.containers if template else ():
        for env in container.env:
            if env.name == variable and env.value:
                return env.value
    return None


def report(ended: Ended, settings: RunSettings) -> None:
    execution = ended.execution
    short = ended.short_name
    if ended.succeeded:
        said = f"succeeded ({execution.succeeded_count} of {execution.task_count} tasks)"
    else:
        said = (
            f"failed ({execution.failed_count} of {execution.task_count} tasks failed, "
            f"{execution.cancelled_count} cancelled, {execution.retried_count} retried)"
        )
        reasons = [c.message for c in execution.conditions if c.message and c.type_ == "Completed"]
        if reasons:
            said += f": {reasons[0]}"
    print(f"execution {short} of {JOB_NAME} {said}", file=sys.stderr)
    if ended.summary is not None:
        verdict = ended.summary.get("verdict")
        if ended.exit_status == EXIT_REFUSED:
            print(
                "the quality gate refused the model: "
                + "; ".join(ended.summary.get("reasons", [])),
                file=sys.stderr,
            )
        elif verdict == "published":
            print(f"MODEL_URI to deploy: {ended.summary.get('model_uri')}", file=sys.stderr)
        elif ended.summary.get("error"):
            print(f"the job said: {ended.summary['error']}", file=sys.stderr)
        print(f"summary: {ended.summary_uri}", file=sys.stderr)
    else:
        print(
            "the job left no summary (it may have stopped before its end): see its logs",
            file=sys.stderr,
        )
    if execution.log_uri:
        print(f"logs: {execution.log_uri}", file=sys.stderr)
    print(
        'logs: gcloud logging read \'resource.type="cloud_run_job" AND '
        f'resource.labels.job_name="{JOB_NAME}" AND '
        f'labels."run.googleapis.com/execution_name"="{short}"\' '
        f"--project {settings.project} --limit 200",
        file=sys.stderr,
    )
    if ended.summary is not None:
        print(json.dumps(ended.summary, sort_keys=True), flush=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(
    environ: Mapping[str, str] | None = None,
    cloud_run_factory=CloudRun.with_default_credentials,
    first_poll: float = FIRST_POLL_SECONDS,
) -> int:
    environ = os.environ if environ is None else environ
    try:
        settings = RunSettings.from_env(environ)
        ended = run_once(cloud_run_factory(), settings, first_poll=first_poll)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    report(ended, settings)
    return ended.exit_status


if __name__ == "__main__":
    sys.exit(main())
