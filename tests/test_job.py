"""`python -m training.job`: train, export, gate, publish, end to end against a real
gcp-storage-emulator. Where the exit status is the point, the job runs as its own process."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from function.model import load_model
from tests.helpers import ROOT
from training.job import (
    DEFAULT_ENTRYPOINT,
    EVALUATION_FILE,
    EXIT_FAILED,
    EXIT_PUBLISHED,
    EXIT_REFUSED,
    EXIT_SETTINGS,
    JobSettings,
    SettingsError,
    main,
)
from training.job_names import ATTEMPT_VARIABLE, EXECUTION_VARIABLE, summary_object
from training.train import CLASS_NAMES

JOB_VARIABLES = (
    "MODEL_BUCKET", "MODEL_URI", "TRAIN_ENTRYPOINT", "MODEL_NAME", "MIN_SCORE", "MAX_REGRESSION",
    "METRIC", EXECUTION_VARIABLE, ATTEMPT_VARIABLE, "CHURN_DATA_URI",
)  # fmt: skip
WEAK = "tests.job_entrypoints:weak_iris"
THREE_FEATURES = "tests.job_entrypoints:three_feature_iris"
RAISES = "tests.job_entrypoints:raises"


@pytest.fixture(autouse=True)
def _no_job_settings(monkeypatch):
    for name in JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def objects(bucket) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs()}


def run_here(capsys, bucket, **env: str) -> tuple[int, dict, str]:
    """The job in this process: (exit status, the summary line, stderr)."""
    status = main({"MODEL_BUCKET": bucket.name, **env})
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, out
    return status, json.loads(lines[0]), err


def run_process(bucket, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m training.job` as its own process, as Cloud Run runs it."""
    environment = {k: v for k, v in os.environ.items() if k not in JOB_VARIABLES}
    environment.update(MODEL_BUCKET=bucket.name, **env)
    result = subprocess.run(
        [sys.executable, "-m", "training.job"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.stdout, result.stderr)
    return result, json.loads(lines[0])


def test_a_first_model_is_published_with_its_evaluation(gcs_bucket):
    result, summary = run_process(gcs_bucket)

    assert result.returncode == EXIT_PUBLISHED, result.stderr
    version = summary["version"]
    prefix = f"models/iris/{version}/"
    assert summary["model_uri"] == f"gs://{gcs_bucket.name}/{prefix}model.onnx"
    assert summary["verdict"] == "published"
    assert summary["production_uri"] is None
    assert summary["metric"] == "accuracy"
    assert summary["metrics"]["candidate"]["accuracy"] == 1.0
    stored = objects(gcs_bucket)
    assert sorted(stored) == [prefix + EVALUATION_FILE, prefix + "model.onnx"]
    evaluation = json.loads(stored[prefix + EVALUATION_FILE])
    assert evaluation["verdict"] == "passed"
    assert evaluation["production"] is None
    assert evaluation["candidate"]["version"] == version
    assert evaluation["holdout_rows"] == 15
    served = load_model(summary["model_uri"], timeout=10)
    assert (served.name, served.version, served.classes) == ("iris", version, CLASS_NAMES)


def test_a_better_model_is_published_as_a_new_version(capsys, gcs_bucket):
    status, weak, _ = run_here(capsys, gcs_bucket, TRAIN_ENTRYPOINT=WEAK, MODEL_NAME="iris")
    assert status == EXIT_PUBLISHED

    status, better, err = run_here(capsys, gcs_bucket, MODEL_URI=weak["model_uri"])

    assert status == EXIT_PUBLISHED, err
    assert better["version"] != weak["version"]
    assert better["production_uri"] == weak["model_uri"]
    assert better["metrics"]["production"]["accuracy"] == pytest.approx(11 / 15)
    assert better["metrics"]["candidate"]["accuracy"] == 1.0
    evaluation = json.loads(
        objects(gcs_bucket)[f"models/iris/{better['version']}/{EVALUATION_FILE}"]
    )
    assert evaluation["production"]["version"] == weak["version"]
    assert evaluation["production"]["compared_rows"] == 15
    assert evaluation["gate"]["regression"] == pytest.approx(-4 / 15)


def test_a_worse_model_is_refused_with_exit_3_and_nothing_written(capsys, gcs_bucket):
    status, production, _ = run_here(capsys, gcs_bucket)
    assert status == EXIT_PUBLISHED
    before = objects(gcs_bucket)

    result, summary = run_process(
        gcs_bucket, TRAIN_ENTRYPOINT=WEAK, MODEL_NAME="iris", MODEL_URI=production["model_uri"]
    )

    assert result.returncode == EXIT_REFUSED, result.stderr
    assert "refused: the candidate's accuracy 0.7333 is worse than production's 1 by 0.2667" in (
        result.stderr
    )
    assert summary["verdict"] == "refused"
    assert summary["model_uri"] is None
    assert summary["metrics"]["candidate"]["accuracy"] == pytest.approx(11 / 15)
    assert summary["metrics"]["production"]["accuracy"] == 1.0
    assert objects(gcs_bucket) == before


def test_a_model_of_other_features_is_refused_naming_them(capsys, gcs_bucket):
    status, production, _ = run_here(capsys, gcs_bucket)
    before = objects(gcs_bucket)

    status, summary, err = run_here(
        capsys, gcs_bucket, TRAIN_ENTRYPOINT=THREE_FEATURES, MODEL_NAME="iris",
        MODEL_URI=production["model_uri"],
    )  # fmt: skip

    assert status == EXIT_REFUSED
    assert summary["verdict"] == "refused"
    (reason,) = summary["reasons"]
    assert reason.startswith(f"the production model {production['model_uri']} cannot be compared")
    assert "features only production takes: ['petal_width']" in reason
    assert "run the job with MODEL_URI unset" in reason
    assert "Traceback" not in err
    assert objects(gcs_bucket) == before


def test_a_training_function_that_raises_gives_its_traceback_and_exit_1(gcs_bucket):
    result, summary = run_process(gcs_bucket, TRAIN_ENTRYPOINT=RAISES)

    assert result.returncode == EXIT_FAILED
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise ValueError("no training rows in the data")' in result.stderr
    assert (
        f"error: training ({RAISES}) raised ValueError: no training rows in the data"
        in result.stderr
    )
    assert summary["verdict"] == "failed"
    assert summary["exit_status"] == EXIT_FAILED
    assert objects(gcs_bucket) == {}


def test_a_retried_run_succeeds_with_the_same_outputs(capsys, gcs_bucket):
    status, first, _ = run_here(capsys, gcs_bucket)
    written = objects(gcs_bucket)

    status, again, err = run_here(capsys, gcs_bucket)

    assert status == EXIT_PUBLISHED, err
    assert again == {**first, "already_published": True}
    assert objects(gcs_bucket) == written


def test_a_retry_after_a_partial_first_attempt_completes_the_version(capsys, gcs_bucket):
    status, first, _ = run_here(capsys, gcs_bucket)
    written = objects(gcs_bucket)
    model_object = first["model_uri"].split("/", 3)[3]
    gcs_bucket.blob(model_object).delete()  # the first attempt stopped after evaluation.json

    status, again, err = run_here(capsys, gcs_bucket)

    assert status == EXIT_PUBLISHED, err
    assert again["already_published"] is False
    assert objects(gcs_bucket) == written


def test_an_evaluation_of_the_same_version_written_earlier_is_kept(capsys, gcs_bucket):
    status, first, _ = run_here(capsys, gcs_bucket)
    evaluation_object = first["model_uri"].split("/", 3)[3].replace("model.onnx", EVALUATION_FILE)
    earlier = json.loads(gcs_bucket.blob(evaluation_object).download_as_bytes())
    earlier["candidate"]["metrics"]["log_loss"] += 1e-16  # figures from another machine
    gcs_bucket.blob(evaluation_object).upload_from_string(json.dumps(earlier))

    status, again, err = run_here(capsys, gcs_bucket)

    assert status == EXIT_PUBLISHED, err
    assert "was written by an earlier run for this version and is kept" in err
    assert json.loads(gcs_bucket.blob(evaluation_object).download_as_bytes()) == earlier


def test_an_evaluation_of_another_version_in_its_place_fails_the_job(capsys, gcs_bucket):
    status, first, _ = run_here(capsys, gcs_bucket)
    evaluation_object = first["model_uri"].split("/", 3)[3].replace("model.onnx", EVALUATION_FILE)
    gcs_bucket.blob(evaluation_object).upload_from_string(
        '{"candidate": {"version": "0000000000000000"}}'
    )

    status, summary, err = run_here(capsys, gcs_bucket)

    assert status == EXIT_FAILED
    assert "already holds the evaluation of version '0000000000000000'" in err
    assert summary["verdict"] == "failed"
    assert summary["version"] == first["version"]  # what was known when it stopped


def churn_csv(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(60, 20, rows).round(2)
    calls = rng.poisson(2, rows)
    risk = 1.5 * (plan == "basic") - 0.05 * tenure + 0.6 * calls + rng.normal(0, 0.5, rows)
    frame = pd.DataFrame({
        "plan": plan, "tenure_months": tenure, "monthly_charges": charges,
        "support_calls": calls, "churned": np.where(risk > 0.5, "yes", "no"),
    })  # fmt: skip
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def test_the_worked_example_trains_from_a_csv_in_cloud_storage(capsys, monkeypatch, gcs_bucket):
    gcs_bucket.blob("data/churn.csv").upload_from_string(churn_csv(400, seed=3))
    monkeypatch.setenv("CHURN_DATA_URI", f"gs://{gcs_bucket.name}/data/churn.csv")
    example = {"TRAIN_ENTRYPOINT": "training.examples.churn:train"}

    status, first, err = run_here(capsys, gcs_bucket, **example)

    assert status == EXIT_PUBLISHED, err
    assert first["name"] == "churn"
    assert first["model_uri"].startswith(f"gs://{gcs_bucket.name}/models/churn/")
    assert first["metrics"]["candidate"]["accuracy"] > 0.8
    served = load_model(first["model_uri"], timeout=10)
    assert [f.name for f in served.signature.features] == [
        "plan", "tenure_months", "monthly_charges", "support_calls",
    ]  # fmt: skip
    assert served.signature.features[0].categories == ("basic", "plus", "pro")

    # Next run, against the model now in production: the same data gives the same version.
    status, second, err = run_here(capsys, gcs_bucket, MODEL_URI=first["model_uri"], **example)

    assert status == EXIT_PUBLISHED, err
    assert second["version"] == first["version"]
    assert second["already_published"] is True


def test_on_cloud_run_each_attempt_leaves_its_summary_in_the_bucket(capsys, gcs_bucket):
    execution = {EXECUTION_VARIABLE: "inference-train-x7k2p", ATTEMPT_VARIABLE: "1"}
    status, production, _ = run_here(capsys, gcs_bucket, **execution)
    refused_run = {EXECUTION_VARIABLE: "inference-train-q9w4z", ATTEMPT_VARIABLE: "0"}

    refused_status, refused, _ = run_here(
        capsys, gcs_bucket, TRAIN_ENTRYPOINT=WEAK, MODEL_NAME="iris",
        MODEL_URI=production["model_uri"], **refused_run,
    )  # fmt: skip

    assert (status, refused_status) == (EXIT_PUBLISHED, EXIT_REFUSED)
    stored = objects(gcs_bucket)
    assert json.loads(stored[summary_object("inference-train-x7k2p", 1)]) == production
    assert json.loads(stored[summary_object("inference-train-q9w4z", 0)]) == refused
    assert refused["exit_status"] == EXIT_REFUSED


def test_a_production_model_that_does_not_exist_fails_and_says_how_to_start(capsys, gcs_bucket):
    missing = f"gs://{gcs_bucket.name}/models/iris/0123456789abcdef/model.onnx"

    status, summary, err = run_here(capsys, gcs_bucket, MODEL_URI=missing)

    assert status == EXIT_FAILED
    assert (
        f"MODEL_URI: cannot read the production model to compare with: cannot load model {missing}: no such object"
        in err
    )
    assert "for a first model, with nothing in production yet, leave MODEL_URI unset" in err
    assert objects(gcs_bucket) == {}


def test_a_production_model_that_is_not_a_model_fails(capsys, gcs_bucket, tmp_path):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")

    status, summary, err = run_here(capsys, gcs_bucket, MODEL_URI=str(broken))

    assert status == EXIT_FAILED
    assert f"cannot load model {broken}: not a valid ONNX model" in err
    assert objects(gcs_bucket) == {}


def test_min_score_refuses_a_first_model_below_it(capsys, gcs_bucket):
    status, summary, err = run_here(capsys, gcs_bucket, TRAIN_ENTRYPOINT=WEAK, MIN_SCORE="0.9")

    assert status == EXIT_REFUSED
    assert summary["reasons"] == ["the candidate's accuracy 0.7333 is below MIN_SCORE 0.9"]
    assert objects(gcs_bucket) == {}


def test_a_lower_is_better_metric_takes_min_score_as_its_ceiling(capsys, gcs_bucket):
    status, summary, err = run_here(capsys, gcs_bucket, METRIC="log_loss", MIN_SCORE="0.05")

    assert status == EXIT_REFUSED
    assert summary["metric"] == "log_loss"
    assert summary["reasons"] == ["the candidate's log_loss 0.1173 is above MIN_SCORE 0.05"]


def test_a_metric_of_the_other_task_names_metric(capsys, gcs_bucket):
    status, summary, err = run_here(capsys, gcs_bucket, METRIC="rmse")

    assert status == EXIT_SETTINGS
    assert (
        "error: METRIC: expected one of ['accuracy', 'log_loss'] for a classification model, got 'rmse'"
        in err
    )
    assert objects(gcs_bucket) == {}


def test_an_entry_point_that_returns_something_else_is_one_line(capsys, gcs_bucket):
    status, summary, err = run_here(
        capsys, gcs_bucket, TRAIN_ENTRYPOINT="tests.job_entrypoints:not_a_tuple"
    )

    assert status == EXIT_FAILED
    assert (
        "expected the tuple (estimator, sample, holdout_X, holdout_y), got LogisticRegression"
        in err
    )


def test_held_out_rows_that_cannot_be_scored_fail_the_job_saying_why(capsys, gcs_bucket):
    status, summary, err = run_here(
        capsys, gcs_bucket, TRAIN_ENTRYPOINT="tests.job_entrypoints:labels_short"
    )

    assert status == EXIT_FAILED
    assert (
        "error: evaluation: holdout_y: expected one label or target per held-out row (15), got 14"
        in err
    )
    assert summary["verdict"] == "failed"
    assert objects(gcs_bucket) == {}


def test_every_bad_setting_is_named_in_one_run(capsys):
    status = main({
        "MODEL_BUCKET": "gs://models", "MODEL_URI": "gs://", "TRAIN_ENTRYPOINT": "train.py",
        "MODEL_NAME": "My Model", "MIN_SCORE": "high", "MAX_REGRESSION": "-0.1", "METRIC": "f1",
    })  # fmt: skip
    out, err = capsys.readouterr()

    assert status == EXIT_SETTINGS
    named = [line.split(":")[1].strip() for line in err.splitlines()]
    assert named == [
        "MODEL_BUCKET", "MODEL_URI", "TRAIN_ENTRYPOINT", "MODEL_NAME", "METRIC", "MIN_SCORE",
        "MAX_REGRESSION",
    ]  # fmt: skip
    assert "got 'train.py'" in err and "got 'high'" in err and "got '-0.1'" in err
    assert json.loads(out)["verdict"] == "failed"


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("tests.no_such_module:train", "TRAIN_ENTRYPOINT: no module 'tests.no_such_module' to import"),
        ("tests.job_entrypoints:missing", "TRAIN_ENTRYPOINT: module 'tests.job_entrypoints' has no 'missing'"),
        ("tests.job_entrypoints:WEAK_C", "TRAIN_ENTRYPOINT: expected a function, 'tests.job_entrypoints:WEAK_C' is a float"),
    ],
)  # fmt: skip
def test_an_entry_point_that_is_not_there_is_a_setting(capsys, gcs_bucket, entrypoint, message):
    status, summary, err = run_here(capsys, gcs_bucket, TRAIN_ENTRYPOINT=entrypoint)

    assert status == EXIT_SETTINGS
    assert message in err


def test_an_entry_point_that_is_not_there_is_named_with_the_other_bad_settings(capsys):
    status = main({"MODEL_BUCKET": "", "TRAIN_ENTRYPOINT": "tests.job_entrypoints:missing"})

    assert status == EXIT_SETTINGS
    assert [line.split(":")[1].strip() for line in capsys.readouterr().err.splitlines()] == [
        "MODEL_BUCKET",
        "TRAIN_ENTRYPOINT",
    ]


def test_the_defaults():
    settings = JobSettings.from_env({"MODEL_BUCKET": "models-1"})

    assert settings.entrypoint == DEFAULT_ENTRYPOINT
    assert settings.model_name == "iris"
    assert settings.production_uri is None
    assert (settings.gate.metric, settings.gate.min_score, settings.gate.max_regression) == (
        None,
        None,
        None,
    )
    named = JobSettings.from_env({"MODEL_BUCKET": "models-1", "TRAIN_ENTRYPOINT": "shop.churn:fit"})
    assert named.model_name == "churn"
    with pytest.raises(SettingsError, match="MODEL_BUCKET: required"):
        JobSettings.from_env({})
