"""`make train-job`: the real google-cloud-run client against a local server speaking the Cloud Run
Admin API v2's JSON (jobs.run's long-running operation, operations.get, executions.get), and the
job's summaries in a real gcp-storage-emulator bucket."""

import json

import pytest
from google.auth.credentials import AnonymousCredentials

from training.job_names import JOB_NAME, summary_object
from training.run_job import (
    EXIT_CANNOT_RUN,
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_SUCCEEDED,
    CloudRun,
    RunSettings,
    main,
)

PROJECT = "shop-ml-1234"
REGION = "asia-northeast1"
LOCATION = f"projects/{PROJECT}/locations/{REGION}"
JOB = f"{LOCATION}/jobs/{JOB_NAME}"
EXECUTION_ID = "inference-train-x7k2p"
EXECUTION = f"{JOB}/executions/{EXECUTION_ID}"
OPERATION = f"{LOCATION}/operations/4f1c0a8e-0b6d-4d0e-9a51-6a3e3c2f1b7d"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
LOG_URI = f"https://console.cloud.google.com/logs/viewer?project={PROJECT}&resource=cloud_run_job"


def execution_json(
    bucket: str, *, succeeded=0, failed=0, retried=0, message=None, done=True
) -> dict:
    """A Cloud Run Admin API v2 Execution of one task, retried at most once."""
    body = {
        "name": EXECUTION, "uid": "5b3e", "job": JOB_NAME, "taskCount": 1, "parallelism": 1,
        "template": {"maxRetries": 1, "containers": [{
            "image": f"{REGION}-docker.pkg.dev/{PROJECT}/inference/train@sha256:" + "ab" * 32,
            "env": [{"name": "MODEL_BUCKET", "value": bucket}, {"name": "MODEL_URI", "value": "gs://m/x"}],
        }]},
        "logUri": LOG_URI,
    }  # fmt: skip
    if succeeded:
        body["succeededCount"] = succeeded
    if failed:
        body["failedCount"] = failed
    if retried:
        body["retriedCount"] = retried
    if done:
        state = "CONDITION_SUCCEEDED" if succeeded else "CONDITION_FAILED"
        condition = {"type": "Completed", "state": state}
        if message:
            condition["message"] = message
        body["conditions"] = [condition]
        body["completionTime"] = "2026-12-03T09:30:00Z"
    return body


def operation_json(execution: dict, *, done: bool, error: dict | None = None) -> dict:
    body = {"name": OPERATION, "metadata": {"@type": EXECUTION_TYPE, **execution}, "done": done}
    if done and error is None:
        body["response"] = {"@type": EXECUTION_TYPE, **execution}
    if error is not None:
        body["error"] = error
    return body


@pytest.fixture
def cloud_run(httpserver):
    """Serves jobs.run, then operations.get until done; `serve(ended, error=...)` sets the end."""

    def serve(ended: dict, *, error: dict | None = None) -> None:
        running = {**ended, "conditions": [], "succeededCount": 0, "failedCount": 0}
        httpserver.expect_oneshot_request(f"/v2/{JOB}:run", method="POST").respond_with_json(
            operation_json(running, done=False)
        )
        # The first poll finds it still running, the next one ended.
        httpserver.expect_oneshot_request(f"/v2/{OPERATION}", method="GET").respond_with_json(
            operation_json(running, done=False)
        )
        httpserver.expect_request(f"/v2/{OPERATION}", method="GET").respond_with_json(
            operation_json(ended, done=True, error=error)
        )
        httpserver.expect_request(f"/v2/{EXECUTION}", method="GET").respond_with_json(ended)

    return serve


def run(capsys, httpserver, **env: str) -> tuple[int, str, str]:
    endpoint = httpserver.url_for("").rstrip("/")
    factory = lambda: CloudRun(credentials=AnonymousCredentials(), api_endpoint=endpoint)  # noqa: E731
    status = main({"PROJECT_ID": PROJECT, "REGION": REGION, **env}, factory, first_poll=0.01)
    out, err = capsys.readouterr()
    return status, out, err


def leave_summary(bucket, attempt: int, summary: dict) -> None:
    bucket.blob(summary_object(EXECUTION_ID, attempt)).upload_from_string(json.dumps(summary))


PUBLISHED = {
    "exit_status": 0, "verdict": "published", "name": "iris", "version": "9b194493b6a3b18a",
    "model_uri": "gs://m/models/iris/9b194493b6a3b18a/model.onnx", "reasons": ["first model"],
}  # fmt: skip
REFUSED = {
    "exit_status": 3, "verdict": "refused", "name": "iris", "version": "1111222233334444",
    "model_uri": None,
    "reasons": ["the candidate's accuracy 0.7333 is worse than production's 1 by 0.2667, and still by 0.2143 ..."],
}  # fmt: skip


def test_a_succeeded_execution_prints_its_summary_and_where_its_logs_are(
    capsys, httpserver, cloud_run, gcs_bucket
):
    cloud_run(execution_json(gcs_bucket.name, succeeded=1))
    leave_summary(gcs_bucket, 0, PUBLISHED)

    status, out, err = run(capsys, httpserver)

    assert status == EXIT_SUCCEEDED
    assert json.loads(out) == PUBLISHED
    assert f"started execution {EXECUTION_ID} of {JOB_NAME}" in err
    assert f"execution {EXECUTION_ID} of {JOB_NAME} succeeded (1 of 1 tasks)" in err
    assert f"MODEL_URI to deploy: {PUBLISHED['model_uri']}" in err
    assert f"summary: gs://{gcs_bucket.name}/{summary_object(EXECUTION_ID, 0)}" in err
    assert f"logs: {LOG_URI}" in err
    assert (
        'logs: gcloud logging read \'resource.type="cloud_run_job" AND '
        f'resource.labels.job_name="{JOB_NAME}" AND '
        f'labels."run.googleapis.com/execution_name"="{EXECUTION_ID}"\' --project {PROJECT}'
    ) in err
    started = [request for request, _ in httpserver.log if request.path.endswith(":run")]
    assert len(started) == 1 and started[0].method == "POST"


def test_a_refusal_by_the_gate_exits_3_with_the_last_attempts_summary(
    capsys, httpserver, cloud_run, gcs_bucket
):
    ended = execution_json(
        gcs_bucket.name, failed=1, retried=1, message="Task inference-train-x7k2p-task0 failed"
    )
    cloud_run(
        ended,
        error={"code": 9, "message": "Execution inference-train-x7k2p has failed to complete"},
    )
    leave_summary(gcs_bucket, 0, {**REFUSED, "reasons": ["the first attempt"]})
    leave_summary(gcs_bucket, 1, REFUSED)

    status, out, err = run(capsys, httpserver)

    assert status == EXIT_REFUSED
    assert json.loads(out) == REFUSED
    assert (
        "failed (1 of 1 tasks failed, 0 cancelled, 1 retried): Task inference-train-x7k2p-task0 failed"
        in err
    )
    assert f"the quality gate refused the model: {REFUSED['reasons'][0]}" in err
    assert f"summary: gs://{gcs_bucket.name}/{summary_object(EXECUTION_ID, 1)}" in err
    # The operation ended in an error: the execution itself was read for its counts.
    assert [r.path for r, _ in httpserver.log if r.path == f"/v2/{EXECUTION}"] == [
        f"/v2/{EXECUTION}"
    ]


def test_a_failed_execution_exits_1_and_says_what_the_job_said(
    capsys, httpserver, cloud_run, gcs_bucket
):
    ended = execution_json(gcs_bucket.name, failed=1, retried=1)
    cloud_run(
        ended,
        error={"code": 9, "message": "Execution inference-train-x7k2p has failed to complete"},
    )
    failure = {
        "exit_status": 1,
        "verdict": "failed",
        "error": "training (shop.churn:train) raised ValueError: no rows",
    }
    leave_summary(gcs_bucket, 1, failure)

    status, out, err = run(capsys, httpserver)

    assert status == EXIT_FAILED
    assert json.loads(out) == failure
    assert "the job said: training (shop.churn:train) raised ValueError: no rows" in err
    assert f"logs: {LOG_URI}" in err


def test_an_execution_that_left_no_summary_is_a_failure_pointing_to_its_logs(
    capsys, httpserver, cloud_run, gcs_bucket
):
    cloud_run(execution_json(gcs_bucket.name, failed=1, retried=1),
              error={"code": 9, "message": "Execution inference-train-x7k2p has failed to complete"})  # fmt: skip

    status, out, err = run(capsys, httpserver)

    assert status == EXIT_FAILED
    assert out == ""
    assert "the job left no summary (it may have stopped before its end): see its logs" in err
    assert f"logs: {LOG_URI}" in err


def test_a_job_that_is_not_deployed_says_so(capsys, httpserver):
    httpserver.expect_request(f"/v2/{JOB}:run", method="POST").respond_with_json(
        {"error": {"code": 404, "message": "Resource not found", "status": "NOT_FOUND"}}, status=404
    )

    status, out, err = run(capsys, httpserver)

    assert status == EXIT_CANNOT_RUN
    assert err == (
        f"error: cannot start the job: there is no Cloud Run job {JOB_NAME} in {REGION} of project "
        f"{PROJECT}; deploy it first\n"
    )


def test_missing_credentials_are_one_line_saying_how_to_log_in(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login here
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # nothing listens: not on Google Cloud
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")

    status = main({"PROJECT_ID": PROJECT})

    assert status == EXIT_CANNOT_RUN
    assert (
        capsys.readouterr().err
        == "error: no Google credentials found: run `gcloud auth application-default login`\n"
    )


def test_bad_settings_are_named_before_anything_starts(capsys):
    started = []

    status = main(
        {"PROJECT_ID": "your-project-id!", "REGION": "tokyo", "TRAIN_JOB_WAIT": "soon"},
        lambda: started.append(1),
    )

    assert status == EXIT_CANNOT_RUN
    err = capsys.readouterr().err
    assert "PROJECT_ID: expected a Google Cloud project id, got 'your-project-id!'" in err
    assert "REGION: expected a region such as asia-northeast1, got 'tokyo'" in err
    assert "TRAIN_JOB_WAIT: expected a positive number of seconds, got 'soon'" in err
    assert started == []


def test_the_job_is_the_convention_s_name_in_the_region_of_the_project():
    assert RunSettings.from_env({"PROJECT_ID": PROJECT}).job == (
        f"projects/{PROJECT}/locations/asia-northeast1/jobs/inference-train"
    )
