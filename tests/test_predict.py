"""The function in-process, through functions-framework's own app: routes, answers, bad input."""

import json
import math

import pytest

from function.app import HEALTH_PATH, PREDICT_PATHS, READY_PATH, VERSION_HEADER
from function.settings import DEFAULT_MAX_BATCH_ROWS, MAX_BODY_BYTES
from tests.helpers import SEED_REQUEST, SEED_SETOSA_PROBABILITY
from training.train import CLASS_NAMES, FEATURE_NAMES

JSON = {"Content-Type": "application/json"}
ANSWER_KEYS = [f"{name}_probability" for name in CLASS_NAMES] + ["target"]


def post(client, body, path="/inference/", headers=JSON):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=data, headers=headers)


@pytest.mark.parametrize("path", PREDICT_PATHS)
def test_seed_request_gets_seed_answer_on_every_predict_path(client, path):
    response = post(client, SEED_REQUEST, path)

    assert response.status_code == 200
    answer = response.json()
    assert list(answer) == ANSWER_KEYS
    assert answer["target"] == "setosa"
    assert answer["setosa_probability"] == pytest.approx(SEED_SETOSA_PROBABILITY, abs=1e-6)
    assert math.fsum(answer[key] for key in ANSWER_KEYS[:-1]) == pytest.approx(1.0, abs=1e-12)


def test_answer_carries_the_model_version(client):
    metadata = client.get("/").json()
    response = post(client, SEED_REQUEST)

    assert response.headers[VERSION_HEADER] == metadata["version"]
    assert len(metadata["version"]) == 16


def test_metadata_describes_the_model(client, trained):
    response = client.get("/")

    assert response.status_code == 200
    metadata = response.json()
    assert metadata["features"] == list(FEATURE_NAMES)
    assert metadata["classes"] == list(CLASS_NAMES)
    assert metadata["scores"] == trained.scores
    assert metadata["max_batch_rows"] == DEFAULT_MAX_BATCH_ROWS


def test_batch_answers_each_row_like_a_single_request(client):
    rows = [
        SEED_REQUEST,
        [6.7, 3.0, 5.2, 2.3],
        {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
    ]
    response = post(client, {"instances": rows})

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    singles = [
        post(client, row if isinstance(row, dict) else dict(zip(FEATURE_NAMES, row))).json()
        for row in rows
    ]
    assert predictions == singles
    assert [p["target"] for p in predictions] == ["setosa", "virginica", "versicolor"]


def test_batch_of_exactly_the_limit_is_served(client):
    response = post(client, {"instances": [[5.1, 3.5, 1.4, 0.2]] * DEFAULT_MAX_BATCH_ROWS})

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == DEFAULT_MAX_BATCH_ROWS


def test_batch_limit_follows_the_setting(make_client):
    client = make_client(MAX_BATCH_ROWS="2")

    assert post(client, {"instances": [[5.1, 3.5, 1.4, 0.2]] * 2}).status_code == 200
    response = post(client, {"instances": [[5.1, 3.5, 1.4, 0.2]] * 3})
    assert response.status_code == 413
    assert response.json() == {"error": 'expected at most 2 rows in "instances", got 3'}


def test_health_answers_without_loading_the_model(make_client, tmp_path):
    client = make_client(MODEL_URI=str(tmp_path / "absent.onnx"))

    assert client.get(HEALTH_PATH).status_code == 200
    assert client.get(HEALTH_PATH).json() == {"status": "ok"}


def test_ready_loads_the_model(client):
    response = client.get(READY_PATH)

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model_version": response.headers[VERSION_HEADER]}


def test_missing_model_is_503_naming_it_then_served_once_it_appears(make_client, tmp_path, model_bytes):
    path = tmp_path / "later.onnx"
    client = make_client(MODEL_URI=str(path))

    for response in (post(client, SEED_REQUEST), client.get(READY_PATH), client.get("/")):
        assert response.status_code == 503
        assert str(path) in response.json()["error"]
    assert client.get(HEALTH_PATH).status_code == 200

    path.write_bytes(model_bytes)
    assert client.get(READY_PATH).status_code == 200
    assert post(client, SEED_REQUEST).json()["target"] == "setosa"


def test_bad_json_is_400_even_while_the_model_cannot_load(make_client, tmp_path):
    client = make_client(MODEL_URI=str(tmp_path / "absent.onnx"))

    response = post(client, b"{not json")

    assert response.status_code == 400


def seed_with(**changes):
    return {**SEED_REQUEST, **changes}


def without(name):
    return {key: value for key, value in SEED_REQUEST.items() if key != name}


BAD_BODIES = [
    # (case, body, status, words the error must contain)
    ("empty body", b"", 400, ["expected a JSON body", "empty"]),
    ("not json", b"sepal_length=5.1", 400, ["expected a JSON body", "invalid JSON"]),
    ("truncated json", b'{"sepal_length": 5.1', 400, ["invalid JSON"]),
    ("invalid utf-8", b'{"sepal_length": "\xff"}', 400, ["invalid JSON", "UTF-8"]),
    ("NaN literal", b'{"sepal_length": NaN, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', 400, ["invalid JSON"]),
    ("Infinity literal", b'{"sepal_length": Infinity, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', 400, ["invalid JSON"]),
    ("overflowing number", b'{"sepal_length": 1e400, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', 400, ["invalid JSON", "infinity"]),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, 400, ["invalid JSON", "depth"]),
    ("array at top", [5.1, 3.5, 1.4, 0.2], 400, ["expected a JSON object", "got [5.1, 3.5, 1.4, 0.2] (array)"]),
    ("string at top", "setosa", 400, ["expected a JSON object", '"setosa" (string)']),
    ("null at top", None, 400, ["expected a JSON object", "got null"]),
    ("missing feature", without("petal_width"), 400, ["expected features", "missing ['petal_width']"]),
    ("extra feature", seed_with(colour=1), 400, ["unexpected ['colour']"]),
    ("misspelt feature", {**without("sepal_length"), "sepal_lenght": 5.1}, 400, ["missing ['sepal_length']", "unexpected ['sepal_lenght']"]),
    ("empty object", {}, 400, ["expected features", "missing"]),
    ("string value", seed_with(sepal_length="5.1"), 400, ['sepal_length: expected a finite number, got "5.1" (string)']),
    ("boolean value", seed_with(petal_width=True), 400, ["petal_width: expected a finite number, got true (boolean)"]),
    ("null value", seed_with(sepal_width=None), 400, ["sepal_width: expected a finite number, got null"]),
    ("object value", seed_with(sepal_width={"cm": 3}), 400, ["sepal_width: expected a finite number", "(object)"]),
    ("instances not a list", {"instances": {"a": 1}}, 400, ['expected "instances" to be a list of rows']),
    ("empty batch", {"instances": []}, 400, ['expected at least 1 row in "instances", got 0']),
    ("batch with extra key", {"instances": [[1, 2, 3, 4]], "model": "x"}, 400, ["got also ['model']"]),
    ("row of wrong width", {"instances": [[5.1, 3.5, 1.4]]}, 400, ["instances[0]: expected 4 numbers", "got 3: [5.1, 3.5, 1.4]"]),
    ("row too wide", {"instances": [[5.1, 3.5, 1.4, 0.2, 9]]}, 400, ["instances[0]: expected 4 numbers", "got 5"]),
    ("row of strings", {"instances": [[1, 2, 3, 4], ["a", "b", "c", "d"]]}, 400, ['instances[1].sepal_length: expected a finite number, got "a" (string)']),
    ("row is a number", {"instances": [7]}, 400, ["instances[0]: expected an object", "got 7 (number)"]),
    ("named row missing a feature", {"instances": [without("sepal_width")]}, 400, ["instances[0]: expected features", "missing ['sepal_width']"]),
    ("over-limit batch", {"instances": [[1, 2, 3, 4]] * (DEFAULT_MAX_BATCH_ROWS + 1)}, 413, [f"expected at most {DEFAULT_MAX_BATCH_ROWS} rows", f"got {DEFAULT_MAX_BATCH_ROWS + 1}"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "body, status, words", [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_bad_body_is_a_4xx_saying_what_was_expected_and_received(client, body, status, words):
    response = post(client, body)

    assert response.status_code == status
    error = response.json()["error"]
    for word in words:
        assert word in error


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"],
)
def test_wrong_content_type_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}

    response = post(client, SEED_REQUEST, headers=headers)

    assert response.status_code == 415
    assert "expected Content-Type application/json" in response.json()["error"]
    assert repr(content_type or "none") in response.json()["error"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.iris+json"])
def test_json_content_types_with_parameters_or_suffix_are_accepted(client, content_type):
    assert post(client, SEED_REQUEST, headers={"Content-Type": content_type}).status_code == 200


def test_body_over_one_mib_is_413(client):
    response = post(client, b" " * (MAX_BODY_BYTES + 1))

    assert response.status_code == 413
    assert response.json()["error"] == f"expected a body of at most {MAX_BODY_BYTES} bytes, got {MAX_BODY_BYTES + 1}"


def test_chunked_body_over_one_mib_is_413(client):
    def chunks():
        for _ in range(20):
            yield b" " * 65536

    response = client.post("/inference/", content=chunks(), headers=JSON)

    assert response.status_code == 413
    assert "at most" in response.json()["error"]


@pytest.mark.parametrize(
    "method, path, allowed",
    [("GET", "/predict", "POST"), ("PUT", "/", "POST, GET, HEAD"), ("DELETE", "/healthz", "GET, HEAD"), ("POST", "/readyz", "GET, HEAD")],
)  # fmt: skip
def test_wrong_method_is_405_with_allow(client, method, path, allowed):
    response = client.request(method, path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json() == {"error": f"expected {allowed.replace(', ', ' or ')} on {path}, got {method}"}


@pytest.mark.parametrize("path", ["/inference/v2", "/predict/", "/INFERENCE", "/..%2f"])
def test_unknown_path_is_404(client, path):
    response = post(client, SEED_REQUEST, path)

    assert response.status_code == 404
    assert "expected one of the paths" in response.json()["error"]
