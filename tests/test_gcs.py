"""The model fetched from Cloud Storage: a real gcp-storage-emulator server, no mocks."""

import json
import os
import subprocess
import sys
import time

import pytest

from function.app import READY_PATH, VERSION_HEADER
from tests.helpers import (
    ROOT,
    SEED_REQUEST,
    SEED_SETOSA_PROBABILITY,
    fake_storage,
    free_port,
    json_lines,
    wait_until_ready,
)
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


@pytest.mark.parametrize(
    "path", ["/", "/openapi.json", "/readyz", "/v2", "/v2/health/ready", "/v2/models/{name}",
             "/v2/models/{name}/versions/{version}", "/v2/models/{name}/ready", "/docs"],
)  # fmt: skip
def test_no_route_shows_where_the_model_is_stored(make_client, gcs_bucket, model_file, path):
    gcs_bucket.blob("secret-path/iris/model.onnx").upload_from_filename(str(model_file))
    client = make_client(MODEL_URI=f"gs://{gcs_bucket.name}/secret-path/iris/model.onnx")
    assert predict(client).status_code == 200

    model = client.get("/").json()

    response = client.get(path.format(name=model["name"], version=model["version"]))

    assert response.status_code == 200
    for leak in ("gs://", gcs_bucket.name, "secret-path", "model.onnx"):
        assert leak not in response.text, (path, leak)


def test_serves_the_model_under_a_load_timeout_longer_than_any_clock_counts(make_client, gcs_bucket, model_file):
    gcs_bucket.blob("model.onnx").upload_from_filename(str(model_file))
    client = make_client(MODEL_URI=f"gs://{gcs_bucket.name}/model.onnx", MODEL_LOAD_TIMEOUT="1e300")

    assert predict(client).status_code == 200


def unavailable(response, kind: str) -> None:
    """A 503 that names only the kind of cause: no bucket, object or library text."""
    assert response.status_code == 503
    assert response.json()["error"].startswith(f"the model is unavailable ({kind})")
    assert "gs://" not in response.text
    assert int(response.headers["Retry-After"]) >= 1


def test_missing_object_is_503_then_served_after_upload_without_restart(make_client, gcs_bucket, model_file, capsys):
    uri = f"gs://{gcs_bucket.name}/model.onnx"
    client = make_client(MODEL_URI=uri)

    unavailable(predict(client), "not found")
    assert client.get(READY_PATH).status_code == 503
    (entry,) = json_lines(capsys.readouterr().out)
    assert entry["message"] == f"cannot load model {uri}: no such object"

    gcs_bucket.blob("model.onnx").upload_from_filename(str(model_file))

    wait_until_ready(client.get)
    response = predict(client)
    assert response.status_code == 200
    assert response.headers[VERSION_HEADER] == client.get("/").json()["version"]


def test_corrupt_object_is_503_invalid_model_and_the_log_names_it(make_client, gcs_bucket, capsys):
    gcs_bucket.blob("model.onnx").upload_from_string(b"\x00not an onnx model")
    uri = f"gs://{gcs_bucket.name}/model.onnx"
    client = make_client(MODEL_URI=uri)

    unavailable(predict(client), "invalid model")
    (entry,) = json_lines(capsys.readouterr().out)
    assert entry["message"].startswith(f"cannot load model {uri}: not a valid ONNX model")
    assert entry["model_uri"] == uri


def test_missing_bucket_is_503_not_found(make_client, gcs_emulator, monkeypatch, capsys):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = make_client(MODEL_URI="gs://no-such-bucket-here/model.onnx")

    unavailable(predict(client), "not found")
    assert "gs://no-such-bucket-here/model.onnx" in capsys.readouterr().out


def test_unreachable_storage_is_503_within_the_load_timeout(make_client, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    client = make_client(MODEL_URI="gs://bucket/model.onnx", MODEL_LOAD_TIMEOUT="1")

    unavailable(predict(client), "storage unreachable")


def test_an_object_over_model_max_bytes_is_503_too_large(make_client, gcs_bucket, model_file):
    gcs_bucket.blob("model.onnx").upload_from_filename(str(model_file))
    client = make_client(MODEL_URI=f"gs://{gcs_bucket.name}/model.onnx", MODEL_MAX_BYTES=str(model_file.stat().st_size - 1))

    unavailable(predict(client), "too large")


def metadata(size: int):
    body = json.dumps({"name": "model.onnx", "bucket": "b", "size": str(size), "generation": "1"}).encode()
    return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, lambda write: write(body)


def trickle(total: int, pause: float = 0.2):
    def write_body(write):
        for _ in range(total):
            write(b"x")
            time.sleep(pause)

    return 200, {"Content-Type": "application/octet-stream", "Content-Length": str(total)}, write_body


def endless(write):
    chunk = b"x" * 65536
    for _ in range(1024):  # 64 MiB at most, if the client never stops
        write(chunk)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slow", ["metadata", "body", "silence"])
def test_a_storage_trickling_bytes_cannot_hold_a_request_past_the_load_timeout(make_client, monkeypatch, slow, capsys):
    def answer(path):
        if "alt=media" in path:
            return trickle(1000, pause=200 if slow == "silence" else 0.2)
        return trickle(1000) if slow == "metadata" else metadata(1000)

    with fake_storage(answer) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
        client = make_client(MODEL_URI="gs://b/model.onnx", MODEL_LOAD_TIMEOUT="1")

        unavailable(predict(client), "timeout")

    (entry,) = json_lines(capsys.readouterr().out)
    assert entry["cause"] == "timeout"
    assert entry["seconds"] < 60  # well under the 200 s the trickle would take


@pytest.mark.timeout(120)
def test_a_storage_trickling_its_status_line_and_headers_cannot_hold_a_request_past_the_load_timeout(
    make_client, monkeypatch, capsys
):
    with fake_storage(lambda path: metadata(1000), header_pause=0.5) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
        client = make_client(MODEL_URI="gs://b/model.onnx", MODEL_LOAD_TIMEOUT="2")

        unavailable(predict(client), "timeout")
        # The abandoned fetch hangs up rather than reading on in the background.
        deadline = time.monotonic() + 10
        while not storage.hang_ups:
            assert time.monotonic() < deadline, "the fetch past its deadline kept its connection"
            time.sleep(0.1)

    (entry,) = json_lines(capsys.readouterr().out)
    assert entry["cause"] == "timeout"
    assert entry["seconds"] < 20  # well under the 35 s the head alone would take


def test_an_object_whose_size_is_over_the_cap_is_refused_before_its_body_is_asked_for(make_client, monkeypatch):
    with fake_storage(lambda path: metadata(10 * 1024**3) if "alt=media" not in path else trickle(10)) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
        client = make_client(MODEL_URI="gs://b/model.onnx")

        unavailable(predict(client), "too large")

    assert storage.requests and not any("alt=media" in path for path in storage.requests)


@pytest.mark.timeout(120)
def test_a_body_longer_than_announced_is_cut_at_the_cap(make_client, monkeypatch):
    def answer(path):
        if "alt=media" in path:
            return 200, {"Content-Type": "application/octet-stream", "Connection": "close"}, endless
        return metadata(1000)

    with fake_storage(answer) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
        client = make_client(MODEL_URI="gs://b/model.onnx", MODEL_MAX_BYTES=str(1024 * 1024))

        unavailable(predict(client), "too large")


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
