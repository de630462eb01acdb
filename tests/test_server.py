"""The service as a real process on a real socket: functions-framework's CLI and the Dockerfile's CMD."""

import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from function.app import VERSION_HEADER
from tests.helpers import (
    BIN,
    ROOT,
    SEED_CURL,
    SEED_REQUEST,
    SEED_SETOSA_PROBABILITY,
    doc_pages,
    fake_storage,
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
    assert command[:3] == ["python", "-m", "function.server"]
    command = [str(BIN / "python"), *command[1:]]  # this environment's interpreter
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


def test_logs_are_structured_and_carry_the_trace_while_the_503_reveals_no_path(tmp_path):
    model_uri = str(tmp_path / "absent.onnx")
    env = {"MODEL_URI": model_uri, "GOOGLE_CLOUD_PROJECT": "my-project"}
    with serve(env, tmp_path / "server.log") as server:
        trace = {"X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1"}
        response = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, headers=trace, timeout=10)
        entries = server.json_logs()

    assert response.status_code == 503
    assert response.json()["error"].startswith("the model is unavailable (not found)")
    assert str(tmp_path) not in response.text
    (entry,) = entries
    assert entry["severity"] == "ERROR"
    assert entry["message"] == f"cannot load model {model_uri}: No such file or directory"
    assert (entry["model_uri"], entry["cause"]) == (model_uri, "not found")
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


def test_sigterm_answers_the_requests_in_flight_then_stops(tmp_path, model_file):
    model = model_file.read_bytes()

    def answer(path):
        if "alt=media" not in path:
            body = json.dumps({"size": str(len(model)), "generation": "1"}).encode()
            return 200, {"Content-Length": str(len(body))}, lambda write: write(body)

        def slowly(write):  # slow enough to send SIGTERM while requests wait on it
            for start in range(0, len(model), 100):
                write(model[start : start + 100])
                time.sleep(0.2)

        return 200, {"Content-Length": str(len(model))}, slowly

    with fake_storage(answer) as storage:
        env = {"MODEL_URI": "gs://b/model.onnx", "STORAGE_EMULATOR_HOST": storage.url}
        with serve(env, tmp_path / "server.log") as server, ThreadPoolExecutor(max_workers=8) as pool:
            url = f"{server.url}/inference/"
            in_flight = [pool.submit(requests.post, url, json=SEED_REQUEST, timeout=60) for _ in range(8)]
            deadline = time.monotonic() + 30
            while not any("alt=media" in path for path in storage.requests):
                assert time.monotonic() < deadline, "the model was never fetched"
                time.sleep(0.02)

            server.process.send_signal(signal.SIGTERM)
            # Cloud Run kills the instance ten seconds after its SIGTERM: all must be done by then.
            killed_at = time.monotonic() + 10

            answers = [future.result(timeout=killed_at - time.monotonic()) for future in in_flight]
            assert server.process.wait(timeout=max(killed_at - time.monotonic(), 0)) == 0

    assert [a.status_code for a in answers] == [200] * 8
    assert {a.json()["target"] for a in answers} == {"setosa"}


def test_make_run_on_a_busy_port_names_the_setting_to_change():
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}", "HOST=127.0.0.1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = make.communicate(timeout=120)
        finally:
            if make.poll() is None:  # it served after all: stop it and what it started
                os.killpg(make.pid, signal.SIGTERM)
                make.wait()

    assert make.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert "make run PORT=" in output
    assert "functions-framework" not in output  # refused before anything started


FAKE_APT = """#!/bin/sh
echo "$@" >> "$APT_LOG"
case "$*" in
  *update*)
    if [ ! -e "$APT_LOG.updated" ]; then
      touch "$APT_LOG.updated"
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
      exit 100
    fi ;;
esac
exit 0
"""


def test_debian_deps_waits_for_the_package_locks(tmp_path):
    # apt itself cannot be held locked here without root and a network; a stand-in apt-get that
    # finds the lists locked once shows what the recipe does about it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("apt-get", FAKE_APT), ("sudo", '#!/bin/sh\nexec "$@"\n')):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "apt.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "APT_LOG": str(log)}

    result = subprocess.run(
        ["make", "--no-print-directory", "debian-deps", "DEBIAN_PACKAGES=no-such-command-here", "APT_RETRY_PAUSE=0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert [call.split()[-1] if "update" in call else "install" for call in calls] == ["-qq", "-qq", "install"]
    assert all("-o DPkg::Lock::Timeout=300" in call for call in calls)
    assert calls[-1].endswith("install -y -qq --no-install-recommends no-such-command-here")
    assert "locked by another process; waiting" in result.stdout


# The tolerance each page promises for its printed answers: the blog's row to 1e-6, other rows,
# whose last digits vary more from one machine's math library to another's, to 1e-5. Constants
# here, not read from the docs, so that editing the docs cannot loosen the test; a test checks
# that each page states its own.
DOCS_TOLERANCE = 1e-6
TOLERANCES = {"README.md": DOCS_TOLERANCE, "docs/deploy.md": DOCS_TOLERANCE, "docs/api.md": 1e-5}
STATED = {
    "README.md": r"within (\S+) of\s+the\s+original\s+blog's\s+answer",
    "docs/api.md": r"checks these answers to within (\S+)\.",
}
# README's quick start, deploy.md's "Call it", api.md's batch: the pages show at least these.
LEAST_DOCS_CURLS = 3


def docs_curls() -> list[tuple[str, str, dict]]:
    """Each `curl` line of the docs' shell examples with the answer printed under it, by page."""
    found = []
    for page, text in doc_pages().items():
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            lines = block.splitlines()
            for line, printed in zip(lines, lines[1:]):
                if line.startswith("curl ") and printed.startswith("{"):
                    found.append((page, line, json.loads(printed)))
    return found


@pytest.mark.parametrize("page", sorted(STATED))
def test_the_docs_state_the_tolerance_the_examples_are_checked_to(page):
    stated = re.findall(STATED[page], doc_pages()[page])

    assert [float(text) for text in stated] == [TOLERANCES[page]]


def assert_close(answer, printed, tolerance):
    if isinstance(printed, dict):
        assert list(answer) == list(printed)
        for key in printed:
            assert_close(answer[key], printed[key], tolerance)
    elif isinstance(printed, list):
        assert len(answer) == len(printed)
        for got, expected in zip(answer, printed):
            assert_close(got, expected, tolerance)
    elif isinstance(printed, float):
        assert math.isclose(answer, printed, rel_tol=0, abs_tol=tolerance), (answer, printed)
    else:
        assert answer == printed


def test_the_docs_curl_examples_print_what_they_show(tmp_path, model_file):
    examples = docs_curls()
    # deploy.md's answer is the README's, which states its tolerance for both.
    assert {page for page, _, _ in examples} == TOLERANCES.keys()
    assert len(examples) >= LEAST_DOCS_CURLS, [page for page, _, _ in examples]
    assert examples[0][0] == "README.md", "the README shows the quick start's curl and its answer"
    assert shlex.split(examples[0][1]) == [part.replace("{port}", "5000") for part in SEED_CURL if part != "-s"]
    for page, _, printed in examples:
        if "setosa_probability" in printed:
            assert abs(printed["setosa_probability"] - SEED_SETOSA_PROBABILITY) <= DOCS_TOLERANCE, page

    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log") as server:
        port = server.url.rsplit(":", 1)[1]
        for page, line, printed in examples:
            # The deploy page's examples name the load balancer: they are asked of the local
            # service instead, which must print the same answer (and nothing leaves loopback).
            command = [
                re.sub(r"^https?://[^/]+", f"http://127.0.0.1:{port}", part) for part in shlex.split(line)
            ]
            output = subprocess.run(command, capture_output=True, check=True, timeout=30).stdout

            assert_close(json.loads(output), printed, TOLERANCES[page])
