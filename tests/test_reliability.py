"""The running server under hostile input, sustained load and faults: never a 5xx for a client's
mistake, nothing dropped, and recovery without a restart. Every loop is bounded; loopback only."""

import json
import re
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.processes import free_port, storage_emulator
from bench.run import rss_mb
from function.app import VERSION_HEADER
from function.server import MAX_HEAD_BYTES, MAX_HEADERS
from function.settings import MAX_BODY_BYTES
from tests.helpers import SEED_REQUEST, serve, wait_until_ready

JSON = {"Content-Type": "application/json"}
SOAK_SECONDS = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_file):
    with serve({"MODEL_URI": str(model_file)}, tmp_path_factory.mktemp("hostile") / "server.log") as running:
        yield running


def assert_still_serving(url):
    answer = requests.post(f"{url}/inference/", json=SEED_REQUEST, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["target"] == "setosa"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
named_rows = st.fixed_dictionaries(
    {name: st.one_of(st.floats(), st.integers(-(10**30), 10**30), st.text(max_size=3), st.none(), st.booleans())
     for name in SEED_REQUEST}  # fmt: skip
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    named_rows.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.lists(named_rows, max_size=4).map(lambda rows: json.dumps({"instances": rows}, allow_nan=True).encode()),
    st.binary(max_size=300),
    st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth),
    # Just under and over the JSON parser's limit of 1,024 levels, where a value is parsed whole.
    st.integers(900, 1100).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(900, 1100).map(lambda depth: b'{"instances": [' + b'{"a":' * depth + b"1" + b"}" * depth + b"]}"),
    st.integers(1, 400).map(lambda digits: b'{"sepal_length": 1' + b"0" * digits + b"}"),
    # Lone surrogates cannot be encoded as UTF-8 at all: no client could send one.
    st.dictionaries(st.text(alphabet=st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), min_size=1, max_size=6), st.floats(), max_size=4).map(
        lambda v: json.dumps(v, ensure_ascii=False, allow_nan=True).encode()
    ),
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
     "multipart/form-data", "application/json; charset=latin-1", "", "\u00e9/\u00e8"]
)  # fmt: skip


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=content_types, path=st.sampled_from(["/", "/inference/", "/predict", "/readyz", "/x"]))
def test_hostile_input_never_gets_a_5xx(server, body, content_type, path):
    headers = {"Content-Type": content_type.encode("utf-8")} if content_type else {}

    response = requests.post(f"{server.url}{path}", data=body, headers=headers, timeout=10)

    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert "error" in response.json()


def test_oversized_bodies_are_refused_and_the_server_keeps_serving(server):
    for size in (1024 * 1024 + 1, 8 * 1024 * 1024):
        response = requests.post(f"{server.url}/inference/", data=b"1" * size, headers=JSON, timeout=30)
        assert response.status_code == 413

    assert_still_serving(server.url)


def test_after_the_hostile_battery_the_server_still_answers(server):
    assert server.process.poll() is None
    assert_still_serving(server.url)


SOAK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"target":"setosa"', 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("bad=%d\\n", total))
end
"""


def test_soak_answers_every_request_correctly_and_memory_holds(tmp_path, model_file):
    script = tmp_path / "soak.lua"
    script.write_text(SOAK_SCRIPT)
    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log") as server:
        warm = ["wrk", "-t1", "-c16", "-d3s", "-s", str(script), f"{server.url}/inference/"]
        subprocess.run(warm, capture_output=True, check=True, timeout=60)
        before = rss_mb(server.process.pid)

        soak = ["wrk", "-t1", "-c16", f"-d{SOAK_SECONDS}s", "-s", str(script), f"{server.url}/inference/"]
        out = subprocess.run(soak, capture_output=True, text=True, check=True, timeout=SOAK_SECONDS + 60).stdout
        after = rss_mb(server.process.pid)

    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    assert requests_done > 1000, out
    assert "bad=0" in out, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    assert after <= before * 1.10, (before, after)


def test_storage_down_at_the_first_request_then_up_is_served_without_restart(tmp_path, model_file, monkeypatch):
    from google.cloud import storage

    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    uri = "gs://late-bucket/model.onnx"
    # A refused connection is told at once; the timeout only has to outlast the first load's imports
    # on a busy machine, or the attempt ends as a timeout before storage is ever asked.
    env = {"MODEL_URI": uri, "STORAGE_EMULATOR_HOST": emulator_url, "MODEL_LOAD_TIMEOUT": "10"}
    with serve(env, tmp_path / "server.log") as server:
        down = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=30)
        assert down.status_code == 503
        assert down.json()["error"].startswith("the model is unavailable (storage unreachable)")

        with storage_emulator(tmp_path / "emulator.log", port=port):
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url)
            storage.Client().create_bucket("late-bucket").blob("model.onnx").upload_from_filename(str(model_file))

            wait_until_ready(lambda path: requests.get(f"{server.url}{path}", timeout=30))
            assert_still_serving(server.url)
            assert server.process.poll() is None


def test_with_storage_down_one_attempt_serves_all_waiting_requests_then_503s_come_at_once(tmp_path):
    env = {"MODEL_URI": "gs://b/model.onnx", "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}", "MODEL_LOAD_TIMEOUT": "3"}
    with serve(env, tmp_path / "server.log") as server:
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(
                lambda _: requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=30), range(20)
            ))  # fmt: skip
        attempts = [entry for entry in server.json_logs() if entry["severity"] == "ERROR"]
        ready = requests.get(f"{server.url}/readyz", timeout=30)

    assert [a.status_code for a in answers] == [503] * 20
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
    assert len(attempts) == 1, attempts
    assert attempts[0]["cause"] == "storage unreachable"
    assert ready.status_code == 503
    assert 0 < ready.json()["next_attempt_in_seconds"] <= 30
    assert int(ready.headers["Retry-After"]) >= 1


def test_wrong_shape_model_is_503_invalid_model_and_the_process_lives(tmp_path, gcs_bucket, gcs_emulator, trained):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from tests.test_model import IRIS_PROPS, onnx_with

    three = LogisticRegression().fit(trained.features[:, :3], np.arange(150) % 3)
    gcs_bucket.blob("wrong.onnx").upload_from_string(onnx_with(three, 3, IRIS_PROPS))
    uri = f"gs://{gcs_bucket.name}/wrong.onnx"
    with serve({"MODEL_URI": uri, "STORAGE_EMULATOR_HOST": gcs_emulator}, tmp_path / "server.log") as server:
        response = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=30)

        assert response.status_code == 503
        assert response.json()["error"].startswith("the model is unavailable (invalid model)")
        (entry,) = server.json_logs()
        assert entry["message"].startswith(f"cannot load model {uri}: expected a float input of shape [N, 4]")
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert server.process.poll() is None


def raw_request(url: str, head: bytes, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head + body)
    return sock


def test_a_413_closes_the_connection_without_reading_the_rest(server):
    head = (
        f"POST /inference/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {8 * MAX_BODY_BYTES}\r\n\r\n"
    ).encode()
    with raw_request(server.url, head, b" " * 65536) as sock:
        received = b""
        while chunk := sock.recv(65536):  # ends when the server closes; a timeout fails the test
            received += chunk

    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"\r\nconnection: close\r\n" in rest.lower()
    assert_still_serving(server.url)


def test_a_client_disconnecting_mid_body_is_one_info_line_not_an_error(tmp_path, model_file):
    head = b"POST /inference/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log") as server:
        raw_request(server.url, head, b'{"sepal_length": 5.1').close()
        deadline = time.monotonic() + 20
        while not server.json_logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_still_serving(server.url)
        logs = server.logs()

    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    disconnects = [e for e in entries if "disconnected" in e["message"]]
    assert [e["severity"] for e in disconnects] == ["INFO"], logs
    assert not [e for e in entries if e["severity"] == "ERROR"], logs
    assert "Traceback" not in logs


def test_a_model_replaced_while_serving_keeps_the_loaded_version(tmp_path, gcs_bucket, gcs_emulator, model_file, trained):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from training.train import Trained, export

    blob = gcs_bucket.blob("model.onnx")
    blob.upload_from_filename(str(model_file))
    env = {"MODEL_URI": f"gs://{gcs_bucket.name}/model.onnx", "STORAGE_EMULATOR_HOST": gcs_emulator}
    with serve(env, tmp_path / "server.log") as server:
        first = requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=30)
        other = LogisticRegression(C=0.01).fit(trained.features, np.arange(150) // 50)
        blob.upload_from_string(export(Trained(model=other, scores=trained.scores, features=trained.features)))

        later = [requests.post(f"{server.url}/inference/", json=SEED_REQUEST, timeout=10) for _ in range(20)]
        metadata_version = requests.get(f"{server.url}/", timeout=10).json()["version"]

    assert {r.headers[VERSION_HEADER] for r in later} == {first.headers[VERSION_HEADER]} == {metadata_version}
    assert all(r.json() == first.json() for r in later)

    with serve(env, tmp_path / "restarted.log") as restarted:
        fresh = requests.post(f"{restarted.url}/inference/", json=SEED_REQUEST, timeout=30)
    assert fresh.headers[VERSION_HEADER] != first.headers[VERSION_HEADER]


BODY_READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory, model_file):
    env = {"MODEL_URI": str(model_file), "BODY_READ_TIMEOUT": str(BODY_READ_TIMEOUT)}
    with serve(env, tmp_path_factory.mktemp("impatient") / "server.log") as running:
        yield running


STALLED_BODIES = {
    "shorter than its Content-Length": (
        b"POST /inference/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b'{"sepal_length": 5.1',
    ),
    "a chunk that never ends": (
        b"POST /inference/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"ffffffffffffffff\r\n" + b'{"sepal_length": 5.1',
    ),
    "chunks that stop coming": (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"4\r\n{\"in\r\n",
    ),
}


@pytest.mark.parametrize("head, body", STALLED_BODIES.values(), ids=STALLED_BODIES)
def test_a_body_that_stops_arriving_is_a_408_that_closes_the_connection(impatient_server, head, body):
    started = time.monotonic()
    with raw_request(impatient_server.url, head, body) as sock:
        received = b""
        while chunk := sock.recv(65536):  # ends when the server closes; a timeout fails the test
            received += chunk
    waited = time.monotonic() - started

    status, _, rest = received.partition(b"\r\n")
    headers, _, answer = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert b"\r\nconnection: close" in b"\r\n" + headers.lower()
    assert json.loads(answer)["error"] == f"expected the whole body within {BODY_READ_TIMEOUT:g} s of the headers, got only part of it"
    # Cut by the deadline (checked four times per timeout; loose for a busy machine), long
    # before the socket's own timeout of 10 s, let alone Cloud Run's request timeout.
    assert BODY_READ_TIMEOUT <= waited < 8
    assert_still_serving(impatient_server.url)


def test_a_body_that_arrives_slowly_within_the_timeout_is_answered(impatient_server):
    body = json.dumps(SEED_REQUEST).encode()
    head = f"POST /inference/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    with raw_request(impatient_server.url, head, body[:10]) as sock:
        time.sleep(BODY_READ_TIMEOUT / 2)
        sock.sendall(body[10:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk

    assert received.startswith(b"HTTP/1.1 200 OK"), received[:300]
    assert b'"target":"setosa"' in received


def read_answer(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):  # ends when the server closes; a timeout fails the test
            received += chunk
    except ConnectionResetError:  # closed with some of what was sent unread: the answer came first
        pass
    return received


def header_lines(count: int, size: int = 1) -> bytes:
    return b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * size) for i in range(count))


OVERSIZED_HEADS = {
    "one header line over the limit": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n",
    "a request line over the limit": b"GET /healthz?" + b"q" * (MAX_HEAD_BYTES + 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "headers adding up over the limit": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + header_lines(MAX_HEADERS - 2, MAX_HEAD_BYTES // (MAX_HEADERS - 2)) + b"\r\n",
    "one header too many": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + header_lines(MAX_HEADERS) + b"\r\n",
}


@pytest.mark.parametrize("head", OVERSIZED_HEADS.values(), ids=OVERSIZED_HEADS)
def test_an_oversized_request_head_is_a_431_and_the_server_keeps_serving(server, head):
    with raw_request(server.url, head, b"") as sock:
        received = read_answer(sock)

    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large", received[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["error"].startswith("expected ")
    assert_still_serving(server.url)


def test_a_head_that_never_ends_is_refused_before_it_is_all_sent(server):
    host, port = server.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            while sent < 64 * MAX_HEAD_BYTES:  # far more than the limit; the server stops first
                sock.sendall(b"e" * 16384)
                sent += 16384
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = read_answer(sock)

    assert sent < 64 * MAX_HEAD_BYTES
    assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), received[:300]
    assert_still_serving(server.url)


def test_a_head_within_the_limits_is_served(server):
    size = (MAX_HEAD_BYTES - 1024) // (MAX_HEADERS - 2) - len(b"X-Field-00: \r\n")
    head = (
        b"POST /inference/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + header_lines(MAX_HEADERS - 4, size)
        + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(json.dumps(SEED_REQUEST))
    )
    with raw_request(server.url, head, json.dumps(SEED_REQUEST).encode()) as sock:
        received = read_answer(sock)

    assert received.startswith(b"HTTP/1.1 200 OK"), received[:300]
