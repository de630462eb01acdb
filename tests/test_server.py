"""The service as a real process on a real socket: functions-framework's CLI and the Dockerfile's CMD."""

import json
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from function.app import VERSION_HEADER
from tests.helpers import (
    ROOT,
    SEED_CURL,
    SEED_REQUEST,
    SEED_SETOSA_PROBABILITY,
    free_port,
    serve,
)

CONTAINER_PORT = 5000


def dockerfile_instruction(keyword: str) -> list[str]:
    """The arguments of each `keyword` instruction, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        line[len(keyword) + 1 :].strip()
        for line in text.splitlines()
        if line.startswith(keyword + " ")
    ]


def test_seed_curl_gets_the_seed_answer(tmp_path, model_file):
    assert shutil.which("curl"), "curl is installed by `make test`"
    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log") as server:
        port = server.url.rsplit(":", 1)[1]
        command = [part.replace("{port}", port) for part in SEED_CURL]

        answer = json.loads(subprocess.run(command, capture_output=True, check=True, timeout=30).stdout)

    assert answer["target"] == "setosa"
    assert answer["setosa_probability"] == pytest.approx(SEED_SETOSA_PROBABILITY, abs=1e-6)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_dockerfile_cmd_serves_on_its_port(tmp_path, model_file):
    (cmd,) = dockerfile_instruction("CMD")
    command = json.loads(cmd)
    assert f"PORT={CONTAINER_PORT}" in " ".join(dockerfile_instruction("ENV")).split()
    assert dockerfile_instruction("EXPOSE") == [str(CONTAINER_PORT)]
    assert command[0] == "functions-framework" and "--target=predict" in command
    # The container's port when it is free here; otherwise any port proves the CMD honours PORT.
    port = CONTAINER_PORT if port_is_free(CONTAINER_PORT) else free_port()

    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log", command=command, port=port) as server:
        response = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=10)

    assert response.status_code == 200
    assert response.json()["target"] == "setosa"


def test_concurrent_first_requests_download_the_model_once(tmp_path, gcs_bucket, gcs_emulator, model_file):
    gcs_bucket.blob("model.onnx").upload_from_filename(str(model_file))
    env = {"MODEL_URI": f"gs://{gcs_bucket.name}/model.onnx", "STORAGE_EMULATOR_HOST": gcs_emulator}

    with serve(env, tmp_path / "server.log") as server:
        with ThreadPoolExecutor(max_workers=64) as pool:
            responses = list(
                pool.map(lambda _: requests.post(f"{server.url}/predict", json=SEED_REQUEST, timeout=30), range(64))
            )
        loads = [entry for entry in server.json_logs() if entry["message"].startswith("model loaded")]

    assert [r.status_code for r in responses] == [200] * 64
    assert {r.json()["target"] for r in responses} == {"setosa"}
    assert len({r.headers[VERSION_HEADER] for r in responses}) == 1
    assert len(loads) == 1


def test_logs_are_structured_and_carry_the_trace(tmp_path):
    env = {"MODEL_URI": str(tmp_path / "absent.onnx"), "GOOGLE_CLOUD_PROJECT": "my-project"}
    with serve(env, tmp_path / "server.log") as server:
        trace = {"X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1"}
        response = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, headers=trace, timeout=10)
        entries = server.json_logs()

    assert response.status_code == 503
    (entry,) = entries
    assert entry["severity"] == "ERROR"
    assert entry["message"] == response.json()["error"]
    assert entry["logging.googleapis.com/trace"] == "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"


def test_bad_requests_leave_no_log_and_the_server_serving(tmp_path, model_file):
    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log") as server:
        for body in (b"{", b"[]", b'{"sepal_length": "x"}'):
            status = requests.post(
                f"{server.url}/inference/", data=body, headers={"Content-Type": "application/json"}, timeout=10
            ).status_code
            assert status == 400
        answer = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=10)
        entries = server.json_logs()

    assert answer.status_code == 200
    assert [entry["message"].split(" from ")[0] for entry in entries] == ["model loaded"]
