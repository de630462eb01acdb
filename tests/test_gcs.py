"""The model fetched from Cloud Storage: a real gcp-storage-emulator server, no mocks."""

import json
import os
import subprocess
import sys

import pytest

from function.app import READY_PATH, VERSION_HEADER
from tests.helpers import ROOT, SEED_REQUEST, SEED_SETOSA_PROBABILITY, free_port
from training.upload import main

JSON = {"Content-Type": "application/json"}


def predict(client):
    return client.post("/inference/", content=json.dumps(SEED_REQUEST), headers=JSON)


def test_serves_the_model_from_a_gs_uri(make_client, gcs_bucket, model_file):
    gcs_bucket.blob("iris/model.onnx").upload_from_filename(str(model_file))
    client = make_client(MODEL_URI=f"gs://{gcs_bucket.name}/iris/model.onnx")

    response = predict(client)

    assert response.status_code == 200
    assert response.json()["setosa_probability"] == pytest.approx(SEED_SETOSA_PROBABILITY, abs=1e-6)
    assert client.get("/").json()["uri"] == f"gs://{gcs_bucket.name}/iris/model.onnx"


def test_missing_object_is_503_then_served_after_upload_without_restart(make_client, gcs_bucket, model_file):
    uri = f"gs://{gcs_bucket.name}/model.onnx"
    client = make_client(MODEL_URI=uri)

    response = predict(client)
    assert response.status_code == 503
    assert response.json() == {"error": f"cannot load model {uri}: no such object"}
    assert client.get(READY_PATH).status_code == 503

    gcs_bucket.blob("model.onnx").upload_from_filename(str(model_file))

    assert client.get(READY_PATH).status_code == 200
    response = predict(client)
    assert response.status_code == 200
    assert response.headers[VERSION_HEADER] == client.get("/").json()["version"]


def test_corrupt_object_is_503_naming_it(make_client, gcs_bucket):
    gcs_bucket.blob("model.onnx").upload_from_string(b"\x00not an onnx model")
    uri = f"gs://{gcs_bucket.name}/model.onnx"
    client = make_client(MODEL_URI=uri)

    response = predict(client)

    assert response.status_code == 503
    assert response.json()["error"].startswith(f"cannot load model {uri}: not a valid ONNX model")


def test_missing_bucket_is_503_naming_the_uri(make_client, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = make_client(MODEL_URI="gs://no-such-bucket-here/model.onnx")

    response = predict(client)

    assert response.status_code == 503
    assert "gs://no-such-bucket-here/model.onnx" in response.json()["error"]


def test_unreachable_storage_is_503_within_the_load_timeout(make_client, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    client = make_client(MODEL_URI="gs://bucket/model.onnx", MODEL_LOAD_TIMEOUT="1")

    response = predict(client)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error.startswith("cannot load model gs://bucket/model.onnx: ")
    assert "Connection" in error or "Timeout" in error or "Retry" in error


def test_make_upload_copies_the_model_to_model_uri(gcs_bucket, gcs_emulator, model_file, model_bytes):
    uri = f"gs://{gcs_bucket.name}/iris/model.onnx"
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_emulator, "MODEL_URI": uri}
    result = subprocess.run(
        [sys.executable, "-m", "training.upload", "--source", str(model_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"to {uri}")
    assert gcs_bucket.blob("iris/model.onnx").download_as_bytes() == model_file.read_bytes()


def test_upload_refuses_a_uri_that_is_not_gs(model_file):
    assert main(["--source", str(model_file), "--to", "s3://bucket/model.onnx"]) == 2
