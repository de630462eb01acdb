"""Users' own models, exported with `training.export` and served: the service takes the fields the
model declares, answers as scikit-learn does, and refuses what the model cannot take."""

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from function.curl_example import curl_line
from function.decoders.seed import FOREIGN_KEYS
from function.encoders.seed import PREDICTION_KEY, TARGET_KEY, probability_keys
from function.errors import ModelUnavailable
from function.model import model_from_bytes
from function.routes import PREDICT_PATHS
from function.signature import TASK_KEY, TYPED_FEATURES_KEY
from tests.helpers import ROOT, serve
from tests.own_models import COLORS, SHOP_CLASSES, SHOP_FEATURES, ZONES, shop_rows, zone_rows
from tests.test_server import assert_close
from training.train import FEATURE_NAMES

JSON = {"Content-Type": "application/json"}
PROBABILITY_TOLERANCE = 1e-5  # float32 graphs, as the exporter's own parity check


def post(client, body, path="/predict"):
    return client.post(path, content=json.dumps(body).encode(), headers=JSON)


def records(frame) -> list[dict]:
    return [
        {name: (value if isinstance(value, str) else float(value)) for name, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]


@pytest.fixture
def shop(make_client, shop_classifier):
    return make_client(MODEL_URI=str(shop_classifier.path))


@pytest.fixture
def prices(make_client, price_regressor):
    return make_client(MODEL_URI=str(price_regressor.path))


def assert_classified_as_scikit_learn(answers, estimator, frame):
    expected = estimator.predict_proba(frame)
    labels = estimator.predict(frame)
    keys = probability_keys(SHOP_CLASSES)
    for answer, probabilities, label in zip(answers, expected, labels, strict=True):
        assert list(answer) == [*keys, TARGET_KEY]
        served = [answer[key] for key in keys]
        assert np.abs(np.array(served) - probabilities).max() <= PROBABILITY_TOLERANCE
        top_two = sorted(probabilities)[-2:]
        if top_two[1] - top_two[0] > PROBABILITY_TOLERANCE:
            assert answer[TARGET_KEY] == label


def test_a_classifier_pipeline_with_a_categorical_column_answers_as_scikit_learn_row_by_row(shop, shop_classifier):
    frame = shop_rows(25, seed=7)

    answers = []
    for row in records(frame):
        response = post(shop, row)
        assert response.status_code == 200, response.text
        answers.append(response.json())

    assert_classified_as_scikit_learn(answers, shop_classifier.estimator, frame)


@pytest.mark.parametrize("path", PREDICT_PATHS)
def test_a_classifier_batch_of_named_and_positional_rows_answers_as_scikit_learn(shop, shop_classifier, path):
    frame = shop_rows(40, seed=8)
    rows = records(frame)
    instances = [row if index % 2 else [row[name] for name in SHOP_FEATURES] for index, row in enumerate(rows)]

    response = post(shop, {"instances": instances}, path)

    assert response.status_code == 200, response.text
    assert_classified_as_scikit_learn(response.json()["predictions"], shop_classifier.estimator, frame)


def test_a_gradient_boosted_regressor_answers_a_prediction_as_scikit_learn(prices, price_regressor):
    frame = shop_rows(30, seed=9)
    expected = price_regressor.estimator.predict(frame)
    rows = records(frame)

    singles = [post(prices, row).json() for row in rows]
    batch = post(prices, {"instances": [[row[name] for name in SHOP_FEATURES] for row in rows]})

    assert batch.status_code == 200
    assert batch.json() == {"predictions": singles}
    for answer, value in zip(singles, expected, strict=True):
        assert list(answer) == [PREDICTION_KEY]
        assert abs(answer[PREDICTION_KEY] - value) <= 1e-4 * max(1.0, abs(value))


def test_iris_keeps_double_precision_in_a_positional_batch(client, trained):
    response = post(client, {"instances": trained.features.tolist()})

    served = [[answer[key] for key in probability_keys(("setosa", "versicolor", "virginica"))] for answer in response.json()["predictions"]]
    assert np.abs(np.array(served) - trained.model.predict_proba(trained.features)).max() <= 1e-9


def shop_row(**changes):
    return {"color": "red", "size": 10.5, "weight": 40.0, **changes}


SHOP_REFUSALS = [
    # (case, body, status, words the error must contain)
    ("number for a category", shop_row(color=3), 400, ["color: expected a string, one of the 3 known categories, got 3 (number)"]),
    ("null for a category", shop_row(color=None), 400, ["color: expected a string", "got null"]),
    ("string for a number", shop_row(size="big"), 400, ['size: expected a finite number, got "big" (string)']),
    ("boolean for a number", shop_row(weight=True), 400, ["weight: expected a finite number, got true (boolean)"]),
    ("unknown category", shop_row(color="purple"), 422, ["color: expected one of the categories the model knows, ['blue', 'green', 'red'], got 'purple'"]),
    ("category of another case", shop_row(color="Red"), 422, ["got 'Red'"]),
    ("number past 32-bit floats", shop_row(size=1e39), 422, ["size: expected a number between -3.403e+38 and 3.403e+38 (the model takes 32-bit floats), got 1e+39"]),
    ("missing field", {"color": "red", "size": 10.5}, 400, ["expected features ['color', 'size', 'weight']", "missing ['weight']"]),
    ("unexpected field", shop_row(colour="red"), 400, ["unexpected ['colour']"]),
    ("unknown category in a batch", {"instances": [shop_row(), shop_row(color="teal")]}, 422, ["instances[1].color: expected one of the categories"]),
    ("positional row of the wrong types", {"instances": [["red", 10.5, 40.0], [10.5, "red", 40.0]]}, 400, ["instances[1].color: expected a string"]),
    ("positional row too short", {"instances": [["red", 10.5]]}, 400, ["instances[0]: expected 3 values in the order ['color', 'size', 'weight'], got 2"]),
]  # fmt: skip


@pytest.mark.parametrize("body, status, words", [case[1:] for case in SHOP_REFUSALS], ids=[case[0] for case in SHOP_REFUSALS])
def test_a_value_the_model_cannot_take_is_refused_naming_the_field_and_what_it_takes(shop, body, status, words):
    response = post(shop, body)

    assert response.status_code == status
    error = response.json()["error"]
    for word in words:
        assert word in error


def test_a_long_list_of_known_categories_is_cut_in_the_error(make_client, tmp_path, shop_classifier):
    many = [f"colour-{index:04d}" for index in range(500)]
    data = with_props(ignoring_unknown_categories(shop_classifier.path.read_bytes()), features=json.dumps(
        [{"name": "color", "type": "string", "categories": [*COLORS, *many]}, {"name": "size", "type": "number"}, {"name": "weight", "type": "number"}]
    ))  # fmt: skip
    path = tmp_path / "many.onnx"
    path.write_bytes(data)

    response = post(make_client(MODEL_URI=str(path)), shop_row(color="purple"))

    assert response.status_code == 422
    error = response.json()["error"]
    assert len(error) < 600
    assert "(503 in all, listed by GET /)" in error


@pytest.mark.parametrize("key", ["data", "inputs"])
def test_a_body_keyed_as_other_servers_expect_gets_a_hint_towards_instances(shop, key):
    response = post(shop, {key: [["red", 10.5, 40.0]]})

    assert response.status_code == 400
    error = response.json()["error"]
    assert f"got a body keyed ['{key}'] as another server expects" in error
    assert 'send {"instances": [{"color": ' in error


def test_every_foreign_key_gets_the_hint(shop):
    for key in FOREIGN_KEYS:
        assert "as another server expects" in post(shop, {key: {}}).json()["error"]


def test_a_feature_named_like_a_foreign_key_is_a_feature(make_client, tmp_path, shop_classifier):
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from training.export import export_model

    frame = pd.DataFrame({"data": [1.0, 2.0, 3.0, 4.0], "inputs": [0.0, 1.0, 0.0, 1.0]})
    path = tmp_path / "odd.onnx"
    export_model(LinearRegression().fit(frame, [1.0, 2.0, 3.0, 5.0]), frame, path, name="odd")
    client = make_client(MODEL_URI=str(path))

    assert post(client, {"data": 2.0, "inputs": 1.0}).status_code == 200
    assert "missing ['inputs']" in post(client, {"data": 2.0}).json()["error"]


def test_metadata_says_how_to_call_a_model_with_a_categorical_column(shop, shop_classifier):
    metadata = shop.get("/").json()

    assert metadata["name"] == "shop"
    assert metadata["version"] == shop_classifier.version
    assert metadata["task"] == "classification"
    assert metadata["features"] == [
        {"name": "color", "type": "string", "categories": list(COLORS)},
        {"name": "size", "type": "number"},
        {"name": "weight", "type": "number"},
    ]
    assert metadata["classes"] == list(SHOP_CLASSES)
    how = metadata["how_to_call"]
    assert {"method": "POST", "path": "/predict"} in [{k: r[k] for k in ("method", "path")} for r in how["routes"]]
    assert how["request"]["fields"] == {
        "color": "a string, one of the 3 known categories: ['blue', 'green', 'red']",
        "size": "a number between -3.403e+38 and 3.403e+38 (the model takes 32-bit floats)",
        "weight": "a number between -3.403e+38 and 3.403e+38 (the model takes 32-bit floats)",
    }
    # The exporter was asked for the sample's first row as the example.
    assert how["request"]["example"] == records(shop_rows(120, seed=0))[0]
    assert how["request"]["example_is_placeholder"] is False
    assert how["answer_example"] == post(shop, how["request"]["example"]).json()
    assert (how["openapi"], how["docs"]) == ("/openapi.json", "/docs")


def test_metadata_of_a_model_without_an_example_shows_typed_placeholders_that_work(prices):
    how = prices.get("/").json()["how_to_call"]

    assert how["request"]["example"] == {"color": "blue", "size": 0.0, "weight": 0.0}
    assert how["request"]["example_is_placeholder"] is True
    assert post(prices, how["request"]["example"]).json() == how["answer_example"]


def ignoring_unknown_categories(data: bytes) -> bytes:
    """The graph with its one-hot encoders taking any category (as `handle_unknown="ignore"`
    fits them), so that its metadata may list categories it was not fitted on."""
    proto = onnx.load_from_string(data)
    for node in proto.graph.node:
        if node.op_type == "OneHotEncoder":
            for attribute in node.attribute:
                if attribute.name == "zeros":
                    attribute.i = 1
    return proto.SerializeToString()


def with_props(data: bytes, **changes: str) -> bytes:
    proto = onnx.load_from_string(data)
    props = {prop.key: prop.value for prop in proto.metadata_props} | changes
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


SHOP_TYPED = [{"name": "color", "type": "string", "categories": list(COLORS)}, {"name": "size", "type": "number"}, {"name": "weight", "type": "number"}]
SIGNATURE_MISMATCHES = [
    # (case, metadata changes, words of the load error)
    ("category declared a number", {TYPED_FEATURES_KEY: json.dumps([{"name": "color", "type": "number"}, *SHOP_TYPED[1:]])},
     "feature 'color' is a number in the metadata: expected a tensor(float) or tensor(double) input of shape [N, 1], got tensor(string)"),
    ("number declared a string", {TYPED_FEATURES_KEY: json.dumps([SHOP_TYPED[0], {"name": "size", "type": "string"}, SHOP_TYPED[2]])},
     "feature 'size' is a string in the metadata: expected a tensor(string) input"),
    ("features the graph does not take", {TYPED_FEATURES_KEY: json.dumps([SHOP_TYPED[0], {"name": "height", "type": "number"}, SHOP_TYPED[2]]), "feature_names": '["color", "height", "weight"]'},
     "expected one input of shape [N, 3], or one input per feature named as the features ['color', 'height', 'weight']"),
    ("a feature too few", {TYPED_FEATURES_KEY: json.dumps(SHOP_TYPED[:2]), "feature_names": '["color", "size"]'},
     "one input per feature named as the features ['color', 'size']"),
    ("legacy names disagree", {"feature_names": '["color", "weight", "size"]'},
     "expected metadata 'feature_names' to name the features of 'features' in order"),
    ("a classifier declared a regressor", {TASK_KEY: "regression"},
     "a regression model: expected a float output 'prediction' of shape [N, 1]"),
    ("an unknown task", {TASK_KEY: "clustering"}, "expected metadata 'task' to be one of ['classification', 'regression'], got 'clustering'"),
    ("an unknown feature type", {TYPED_FEATURES_KEY: json.dumps([{"name": "color", "type": "category"}, *SHOP_TYPED[1:]])},
     "metadata 'features'[0]: expected \"type\" to be one of ['number', 'string'], got 'category'"),
    ("strings as categories of a number", {TYPED_FEATURES_KEY: json.dumps([SHOP_TYPED[0], {"name": "size", "type": "number", "categories": [1, "2"]}, SHOP_TYPED[2]])},
     "metadata 'features'[1]: expected \"categories\" of a number feature as a list of distinct finite numbers, got '[1, \"2\"]'"),
    ("numbers as categories of a string", {TYPED_FEATURES_KEY: json.dumps([{"name": "color", "type": "string", "categories": [1, 2]}, *SHOP_TYPED[1:]])},
     "metadata 'features'[0]: expected \"categories\" of a string feature as a list of distinct strings"),
    ("classes disagree", {"classes": '["no", "maybe"]'}, "expected metadata 'class_names' and 'classes' to agree"),
    ("a class too many", {"classes": '["no", "yes", "maybe"]', "class_names": '["no", "yes", "maybe"]'},
     "expected probabilities for 3 classes ['no', 'yes', 'maybe'] per row, got an output of shape [1, 2]"),
    ("a name that cannot be in a path", {"model_name": "my/model"}, "expected metadata 'model_name' as 1 to 128 letters"),
]  # fmt: skip


@pytest.mark.parametrize("changes, words", [case[1:] for case in SIGNATURE_MISMATCHES], ids=[case[0] for case in SIGNATURE_MISMATCHES])
def test_metadata_that_does_not_fit_the_graph_fails_the_load_saying_how(shop_classifier, changes, words):
    data = with_props(shop_classifier.path.read_bytes(), **changes)

    with pytest.raises(ModelUnavailable) as raised:
        model_from_bytes(data, "gs://bucket/shop.onnx")

    assert raised.value.kind == "invalid model"
    assert str(raised.value).startswith("cannot load model gs://bucket/shop.onnx: ")
    assert words in str(raised.value)


def test_a_regressor_declared_a_classifier_fails_the_load(price_regressor):
    data = with_props(price_regressor.path.read_bytes(), task="classification", classes='["cheap", "dear"]')

    with pytest.raises(ModelUnavailable, match=r"expected probabilities for 2 classes \['cheap', 'dear'\] per row, got an output of shape \[1, 1\]"):
        model_from_bytes(data, "price.onnx")


def test_a_mismatched_model_is_a_503_and_its_cause_is_logged(make_client, tmp_path, shop_classifier, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(with_props(shop_classifier.path.read_bytes(), task="regression"))
    client = make_client(MODEL_URI=str(path))

    response = post(client, shop_row())

    assert response.status_code == 503
    assert response.json()["error"].startswith("the model is unavailable (invalid model)")
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert "a regression model: expected a float output 'prediction'" in logged[-1]["message"]


def test_an_example_that_is_not_a_valid_row_gives_way_to_placeholders_with_a_warning(make_client, tmp_path, shop_classifier, capsys):
    path = tmp_path / "odd-example.onnx"
    path.write_bytes(with_props(shop_classifier.path.read_bytes(), example=json.dumps(shop_row(color="purple"))))
    client = make_client(MODEL_URI=str(path))

    how = client.get("/").json()["how_to_call"]

    assert how["request"]["example"] == {"color": "blue", "size": 0.0, "weight": 0.0}
    warnings = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"WARNING"' in line]
    assert "its example row is not a valid request" in warnings[0]["message"]


def test_a_file_of_only_the_original_keys_is_served_as_a_numeric_classifier(make_client, tmp_path, model_bytes):
    proto = onnx.load_from_string(model_bytes)
    legacy = {p.key: p.value for p in proto.metadata_props if p.key in ("feature_names", "class_names")}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, legacy)
    path = tmp_path / "legacy.onnx"
    path.write_bytes(proto.SerializeToString())
    client = make_client(MODEL_URI=str(path))

    metadata = client.get("/").json()
    answer = post(client, dict(zip(FEATURE_NAMES, [5.1, 3.5, 1.4, 0.2]))).json()

    assert metadata["name"] == "model"
    assert metadata["task"] == "classification"
    assert [f["type"] for f in metadata["features"]] == ["number"] * 4
    assert answer["target"] == "setosa"


def test_a_regressor_whose_answer_overflows_is_422_naming_the_row(make_client, tmp_path):
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from training.export import export_model

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    path = tmp_path / "line.onnx"
    export_model(LinearRegression().fit(frame, [2.0, 4.0, 6.0]), frame, path, name="line")
    client = make_client(MODEL_URI=str(path))

    fine = post(client, {"x": 2.0})
    single = post(client, {"x": 1e308})
    batch = post(client, {"instances": [[1.0], [1e308]]})

    assert math.isclose(fine.json()["prediction"], 4.0)
    assert single.status_code == 422
    assert single.json()["error"].startswith("the row: expected the model to give a finite prediction")
    assert batch.status_code == 422
    assert batch.json()["error"].startswith("instances[1]: expected the model to give a finite prediction")


OWN_MODEL_PAGE = ROOT / "docs" / "own-model.md"


def own_model_section() -> str:
    return OWN_MODEL_PAGE.read_text()


def export_readme_churn(section: str, directory: Path) -> Path:
    """Runs the page's own fit, then its `make export` command: the model a reader would have."""
    (fit,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[:1]
    ((command, wrote, serve_it),) = re.findall(r"```sh\n(make export [^\n]+)\n(wrote [^\n]+)\n(serve it: [^\n]+)\n```", section)
    settings = dict(word.split("=", 1) for word in shlex.split(command)[2:])
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", fit], cwd=directory, env=environment, check=True, timeout=120)
    # What `make export` runs (the Makefile's recipe), with the page's settings.
    printed = subprocess.run(
        [sys.executable, "-m", "training.export", "--estimator", settings["ESTIMATOR"], "--sample", settings["SAMPLE"],
         "--out", settings["OUT"], "--name", settings["NAME"]],
        cwd=directory, env=environment, check=True, capture_output=True, text=True, timeout=120,
    ).stdout.splitlines()  # fmt: skip

    # The version and the parity gap vary with the fit's last bits; the rest is as shown.
    assert printed[0].split(" version ")[0] == wrote.split(" version ")[0]
    assert printed[0].split("); ")[1].split(" within ")[0] == wrote.split("); ")[1].split(" within ")[0]
    assert printed[1:] == [serve_it] == [f"serve it: make run MODEL_URI={settings['OUT']}"]
    return directory / settings["OUT"]


def test_the_own_model_page_s_curls_print_what_it_shows(tmp_path):
    section = own_model_section()
    examples = re.findall(r"```sh\n(curl [^\n]+)\n```\n\n[^`]*?```json\n([^\n]+)\n```", section)
    assert len(examples) >= 3, "the section shows a row, a batch and a refusal, each with its answer"
    churn = export_readme_churn(section, tmp_path)
    # The request `make run` prints for this model, as the page shows it (test_curl_example runs
    # `make run` itself and sends what it prints).
    (shown,) = re.findall(r"```sh\nmake run MODEL_URI=\S+\n[^\n]+\n  (curl [^\n]+)\n", section)
    assert curl_line(str(churn), 5000) == shown

    with serve({"MODEL_URI": str(churn)}, tmp_path / "server.log") as server:
        port = server.url.rsplit(":", 1)[1]
        version = json.loads(subprocess.run(["curl", "-s", server.url], capture_output=True, check=True).stdout)["version"]
        for line, printed in examples:
            command = [part.replace("localhost:5000", f"127.0.0.1:{port}") for part in shlex.split(line)]
            output = subprocess.run([*command, "-s"], capture_output=True, check=True, timeout=30).stdout
            expected = json.loads(printed)
            if "model_version" in expected:
                # The version hashes the file's bytes, which are not the same from one fit to the next.
                expected["model_version"] = version

            assert_close(json.loads(output), expected, 1e-6)


@pytest.fixture
def zones(make_client, zone_classifier):
    return make_client(MODEL_URI=str(zone_classifier.path))


def test_a_whole_number_category_column_is_described_with_its_known_codes(zones):
    metadata = zones.get("/").json()

    assert metadata["features"] == [{"name": "zone", "type": "number", "categories": list(ZONES)}, {"name": "area", "type": "number"}]
    assert metadata["how_to_call"]["request"]["example"] == {"zone": float(ZONES[0]), "area": 0.0}
    assert metadata["how_to_call"]["request"]["fields"]["zone"] == "a number, one of the 3 known categories: [1, 2, 3]"


def test_known_codes_are_answered_as_scikit_learn_does(zones, zone_classifier):
    frame = zone_rows(30, seed=5)
    rows = records(frame)
    as_integers = [{**row, "zone": int(row["zone"])} for row in rows]

    singles = [post(zones, row) for row in as_integers]
    batch = post(zones, {"instances": rows})

    assert all(response.status_code == 200 for response in [*singles, batch])
    answers = [response.json() for response in singles]
    assert answers == batch.json()["predictions"]
    expected = zone_classifier.estimator.predict_proba(frame)
    served = np.array([[answer[key] for key in probability_keys(SHOP_CLASSES)] for answer in answers])
    assert np.abs(served - expected).max() <= PROBABILITY_TOLERANCE


ZONE_REFUSALS = [
    # (case, body, words the error must contain)
    ("unknown code", {"zone": 7, "area": 80.0}, "zone: expected one of the categories the model knows, [1, 2, 3], got 7 (number)"),
    ("code between codes", {"zone": 2.5, "area": 80.0}, "zone: expected one of the categories the model knows, [1, 2, 3], got 2.5 (number)"),
    ("unknown code in a batch", {"instances": [[1, 80.0], [0.0, 80.0]]}, "instances[1].zone: expected one of the categories"),
]  # fmt: skip


@pytest.mark.parametrize("body, words", [case[1:] for case in ZONE_REFUSALS], ids=[case[0] for case in ZONE_REFUSALS])
def test_a_code_the_model_never_saw_is_422_naming_the_field_and_the_known_codes(zones, body, words):
    response = post(zones, body)

    assert response.status_code == 422, response.text
    assert words in response.json()["error"]


def test_a_v2_integer_code_the_model_never_saw_is_422_naming_the_input(zones):
    body = {
        "inputs": [
            {"name": "zone", "datatype": "INT64", "shape": [2], "data": [1, 9]},
            {"name": "area", "datatype": "FP64", "shape": [2], "data": [80.0, 80.0]},
        ]
    }

    response = zones.post("/v2/models/zones/infer", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "input 'zone' data[1]: expected one of the categories the model knows, [1, 2, 3], got 9 (number)"

