"""Open Inference Protocol V2: the routes with hand-written bodies, in-process, for the iris model,
a classifier pipeline with a categorical column and a regressor; answers compared with the seed
route's and scikit-learn's; every refusal a 4xx naming the tensor and what was expected."""

import json
import math

import numpy as np
import pytest

from function.decoders.v2 import JSON_TENSORS_ONLY, NUMERIC_DATATYPES, ROW_LABEL
from function.encoders.v2 import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT
from function.errors import PREVIEW_CHARS
from function.open_inference import (
    INFER_PATHS,
    LIVE_PATH,
    MODEL_PATHS,
    MODEL_READY_PATHS,
    PLATFORM,
    READY_PATH,
    SERVER_NAME,
    SERVER_PATH,
)
from function.signature import DEFAULT_MODEL_NAME
from tests.own_models import COLORS, SHOP_CLASSES, SHOP_FEATURES, shop_rows
from tests.test_own_models import PROBABILITY_TOLERANCE, post, records
from training.train import CLASS_NAMES, FEATURE_NAMES

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.9, 3.0, 5.1, 1.8]]


def tensors(names, columns, datatypes, shape=None):
    return [
        {"name": name, "datatype": datatype, "shape": shape or [len(column)], "data": list(column)}
        for name, column, datatype in zip(names, columns, datatypes, strict=True)
    ]


def iris_request(rows=IRIS_ROWS, datatype="FP64", **extra):
    return {"inputs": tensors(FEATURE_NAMES, zip(*rows), [datatype] * 4), **extra}


def shop_request(frame, **extra):
    columns = [list(frame[name]) for name in SHOP_FEATURES]
    columns = [[v if isinstance(v, str) else float(v) for v in column] for column in columns]
    return {"inputs": tensors(SHOP_FEATURES, columns, ["BYTES", "FP32", "FP32"]), **extra}


def infer(client, body, name="iris", version=None, headers=None):
    path = INFER_PATHS[1] if version else INFER_PATHS[0]
    return client.post(
        path.format(name=name, version=version),
        content=json.dumps(body).encode(),
        headers=headers if headers is not None else {"Content-Type": "application/json"},
    )


def outputs_of(response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


def as_array(output) -> np.ndarray:
    return np.array(output["data"]).reshape(output["shape"])


@pytest.fixture
def shop(make_client, shop_classifier):
    return make_client(MODEL_URI=str(shop_classifier.path))


@pytest.fixture
def prices(make_client, price_regressor):
    return make_client(MODEL_URI=str(price_regressor.path))


def test_server_metadata_and_health(client):
    assert client.get(SERVER_PATH).json() == {"name": SERVER_NAME, "version": "2", "extensions": []}
    assert client.get(LIVE_PATH).json() == {"live": True}
    ready = client.get(READY_PATH)
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_readiness_is_503_with_the_error_while_the_model_cannot_load(make_client, tmp_path):
    client = make_client(MODEL_URI=str(tmp_path / "absent.onnx"))

    live = client.get(LIVE_PATH)
    ready = client.get(READY_PATH)
    model_ready = client.get(MODEL_READY_PATHS[0].format(name="iris"))

    assert live.status_code == 200
    for response in (ready, model_ready):
        assert response.status_code == 503
        assert response.json()["error"].startswith("the model is unavailable (not found)")
        assert "Retry-After" in response.headers


def test_model_metadata_lists_the_iris_inputs_and_outputs(client):
    version = client.get("/").json()["version"]

    for path in MODEL_PATHS:
        metadata = client.get(path.format(name="iris", version=version)).json()
        assert metadata == {
            "name": "iris",
            "versions": [version],
            "platform": PLATFORM,
            "inputs": [{"name": name, "datatype": "FP64", "shape": [-1]} for name in FEATURE_NAMES],
            "outputs": [
                {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
                {"name": PROBABILITIES_OUTPUT, "datatype": "FP64", "shape": [-1, 3]},
            ],
        }


def test_model_metadata_of_a_pipeline_gives_bytes_for_the_category_and_the_graphs_float_types(shop, prices):
    classifier = shop.get(MODEL_PATHS[0].format(name="shop")).json()
    regressor = prices.get(MODEL_PATHS[0].format(name="price")).json()

    expected_inputs = [
        {"name": "color", "datatype": "BYTES", "shape": [-1]},
        {"name": "size", "datatype": "FP32", "shape": [-1]},
        {"name": "weight", "datatype": "FP32", "shape": [-1]},
    ]
    assert classifier["inputs"] == regressor["inputs"] == expected_inputs
    assert classifier["outputs"][1] == {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, 2]}
    assert regressor["outputs"] == [{"name": PREDICTION_OUTPUT, "datatype": "FP32", "shape": [-1]}]


def test_a_file_without_a_name_is_served_as_model(make_client, tmp_path, model_bytes):
    import onnx

    graph = onnx.load_from_string(model_bytes)
    kept = [prop for prop in graph.metadata_props if prop.key != "model_name"]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    path = tmp_path / "unnamed.onnx"
    path.write_bytes(graph.SerializeToString())
    client = make_client(MODEL_URI=str(path))

    assert client.get(MODEL_PATHS[0].format(name=DEFAULT_MODEL_NAME)).json()["name"] == DEFAULT_MODEL_NAME
    assert outputs_of(infer(client, iris_request(), name=DEFAULT_MODEL_NAME))[LABEL_OUTPUT]["data"][0] == "setosa"
    assert infer(client, iris_request(), name="iris").status_code == 404


def test_model_readiness_by_name_and_version(client):
    version = client.get("/").json()["version"]

    for path in MODEL_READY_PATHS:
        response = client.get(path.format(name="iris", version=version))
        assert (response.status_code, response.json()) == (200, {"name": "iris", "ready": True})


@pytest.mark.parametrize(
    "path, words",
    [
        (MODEL_PATHS[0].format(name="setosa"), "expected model name 'iris', got 'setosa'"),
        (MODEL_PATHS[1].format(name="iris", version="1"), "expected model version"),
        (MODEL_READY_PATHS[0].format(name="resnet"), "expected model name 'iris', got 'resnet'"),
        (MODEL_READY_PATHS[1].format(name="iris", version="0" * 16), "expected model version"),
        ("/v2/models/iris/versions/", "expected one of the paths"),
        ("/v2/models", "expected one of the paths"),
        ("/v2/repository/index", "expected one of the paths"),
    ],
)
def test_another_model_or_path_is_a_404_in_the_protocols_error_form(client, path, words):
    response = client.get(path)

    assert response.status_code == 404
    assert list(response.json()) == ["error"]
    assert words in response.json()["error"]


@pytest.mark.parametrize("name, version", [("irises", None), ("iris", "2")])
def test_inference_on_another_model_is_a_404(client, name, version):
    response = infer(client, iris_request(), name=name, version=version)

    assert response.status_code == 404
    assert "expected model" in response.json()["error"]


def test_iris_answers_as_the_seed_route_and_scikit_learn(client, trained):
    version = client.get("/").json()["version"]
    seed = post(client, {"instances": IRIS_ROWS}).json()["predictions"]

    for answered_version in (None, version):
        response = infer(client, iris_request(id="request-7"), version=answered_version)
        body = response.json()
        outputs = outputs_of(response)
        assert (body["model_name"], body["model_version"], body["id"]) == ("iris", version, "request-7")
        assert response.headers["X-Model-Version"] == version
        assert outputs[LABEL_OUTPUT] == {
            "name": LABEL_OUTPUT,
            "datatype": "BYTES",
            "shape": [4],
            "data": [answer["target"] for answer in seed],
        }
        probabilities = outputs[PROBABILITIES_OUTPUT]
        assert (probabilities["datatype"], probabilities["shape"]) == ("FP64", [4, 3])
        assert as_array(probabilities).tolist() == [
            [answer[f"{name}_probability"] for name in CLASS_NAMES] for answer in seed
        ]
        np.testing.assert_allclose(as_array(probabilities), trained.model.predict_proba(IRIS_ROWS), atol=1e-12)
        assert outputs[LABEL_OUTPUT]["data"] == [CLASS_NAMES[i] for i in trained.model.predict(IRIS_ROWS)]


@pytest.mark.parametrize("datatype", NUMERIC_DATATYPES)
def test_every_numeric_datatype_is_taken(client, datatype):
    rows = [[5, 3, 1, 0], [7, 3, 6, 2]]

    typed = infer(client, iris_request(rows, datatype))
    seed = post(client, {"instances": rows}).json()["predictions"]

    assert outputs_of(typed)[LABEL_OUTPUT]["data"] == [answer["target"] for answer in seed]


@pytest.mark.parametrize(
    "shape, data",
    [
        ("flat", lambda column: column),
        ("column", lambda column: column),
        ("column", lambda column: [[value] for value in column]),
    ],
)
def test_shapes_n_and_n_by_1_with_flat_or_nested_data_answer_alike(client, shape, data):
    body = iris_request()
    for tensor in body["inputs"]:
        tensor["shape"] = [len(IRIS_ROWS)] if shape == "flat" else [len(IRIS_ROWS), 1]
        tensor["data"] = data(tensor["data"])

    assert outputs_of(infer(client, body)) == outputs_of(infer(client, iris_request()))


def test_outputs_can_be_selected_and_the_id_is_echoed_only_when_given(client):
    selected = infer(client, iris_request(outputs=[{"name": PROBABILITIES_OUTPUT}]))
    both = infer(client, iris_request(outputs=[{"name": PROBABILITIES_OUTPUT}, {"name": LABEL_OUTPUT}]))

    assert list(outputs_of(selected)) == [PROBABILITIES_OUTPUT]
    assert list(outputs_of(both)) == [PROBABILITIES_OUTPUT, LABEL_OUTPUT]
    assert "id" not in selected.json()


def test_a_request_without_content_type_is_taken_and_a_declared_non_json_one_refused(client):
    bare = infer(client, iris_request(), headers={})
    text = infer(client, iris_request(), headers={"Content-Type": "text/plain"})

    assert bare.status_code == 200
    assert text.status_code == 415
    assert "expected Content-Type application/json, got 'text/plain'" in text.json()["error"]


def test_the_pipeline_with_a_categorical_column_answers_as_scikit_learn(shop, shop_classifier):
    frame = shop_rows(30, seed=11)

    outputs = outputs_of(infer(shop, shop_request(frame), name="shop"))
    seed = post(shop, {"instances": records(frame)}).json()["predictions"]

    expected = shop_classifier.estimator.predict_proba(frame)
    probabilities = as_array(outputs[PROBABILITIES_OUTPUT])
    assert outputs[PROBABILITIES_OUTPUT]["datatype"] == "FP32"
    assert np.abs(probabilities - expected).max() <= PROBABILITY_TOLERANCE
    assert probabilities.tolist() == [[answer[f"{c}_probability"] for c in SHOP_CLASSES] for answer in seed]
    assert outputs[LABEL_OUTPUT]["data"] == [answer["target"] for answer in seed]
    labels = shop_classifier.estimator.predict(frame)
    for row, label, served in zip(expected, labels, outputs[LABEL_OUTPUT]["data"], strict=True):
        if abs(row[0] - row[1]) > PROBABILITY_TOLERANCE:
            assert served == label


def test_the_regressor_answers_as_scikit_learn(prices, price_regressor):
    frame = shop_rows(30, seed=12)

    output = outputs_of(infer(prices, shop_request(frame), name="price"))[PREDICTION_OUTPUT]
    seed = post(prices, {"instances": records(frame)}).json()["predictions"]

    assert (output["datatype"], output["shape"]) == ("FP32", [30])
    assert output["data"] == [answer["prediction"] for answer in seed]
    expected = price_regressor.estimator.predict(frame)
    for served, wanted in zip(output["data"], expected, strict=True):
        assert abs(served - wanted) <= 1e-4 * max(1.0, abs(wanted))


def test_an_unknown_category_is_a_422_naming_the_tensor_and_the_known_values(shop):
    body = shop_request(shop_rows(3, seed=13))
    body["inputs"][0]["data"][2] = "purple"

    response = infer(shop, body, name="shop")

    assert response.status_code == 422
    assert response.json()["error"] == (
        f"input 'color' data[2]: expected one of the categories the model knows, {list(COLORS)}, got 'purple'"
    )


def test_a_number_beyond_float32_is_a_422_as_in_the_seed_dialect(shop):
    body = shop_request(shop_rows(2, seed=14))
    body["inputs"][1]["data"][1] = 1e39
    row = {**records(shop_rows(1, seed=14))[0], "size": 1e39}

    response = infer(shop, body, name="shop")

    assert response.status_code == post(shop, row).status_code == 422
    assert response.json()["error"].startswith("input 'size' data[1]: expected a number between -3.403e+38")


def test_rows_whose_answer_overflows_are_422_naming_the_row(client):
    response = infer(client, iris_request([[5.1, 3.5, 1.4, 0.2], [1e308] * 4]))

    assert response.status_code == 422
    assert response.json()["error"].startswith(ROW_LABEL.format(1) + ": expected the model to give finite")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e400"])
def test_non_finite_numbers_are_400_invalid_json_as_in_the_seed_dialect(client, literal):
    body = json.dumps(iris_request([[5.1, 3.5, 1.4, 0.2]])).encode().replace(b"5.1", literal)

    response = client.post(INFER_PATHS[0].format(name="iris"), content=body)

    assert response.status_code == 400
    assert "invalid JSON" in response.json()["error"]


def test_a_batch_over_max_batch_rows_is_413(make_client):
    client = make_client(MAX_BATCH_ROWS="3")

    response = infer(client, iris_request())

    assert response.status_code == 413
    assert response.json()["error"] == "expected at most 3 rows in the input tensors, got 4"
    assert infer(client, iris_request(IRIS_ROWS[:3])).status_code == 200


def with_tensor(index, **changes):
    def change(body):
        body["inputs"][index].update(changes)
        return body

    return change


def without(key, index=None):
    def change(body):
        (body if index is None else body["inputs"][index]).pop(key)
        return body

    return change


def replaced(**changes):
    return lambda body: {**body, **changes}


REFUSALS = [
    # (case, change to a valid iris request, words the error must contain)
    ("array at top", lambda body: [body], ['expected a JSON object with "inputs"', "(array)"]),
    ("no inputs", without("inputs"), ['expected "inputs" to be a list of tensors', "got nothing"]),
    ("empty inputs", replaced(inputs=[]), ['expected "inputs" to be a list of tensors', "got [] (array)"]),
    ("unknown key", replaced(data=[1]), ["expected only the keys ['id', 'parameters', 'inputs', 'outputs']", "['data']"]),
    ("numeric id", replaced(id=7), ['expected "id" to be a string, got 7 (number)']),
    ("parameters not an object", replaced(parameters=[]), ['expected "parameters" to be an object']),
    # Parameters as the protocol defines them, flat and bounded, wherever a request may carry them.
    ("parameter an object", replaced(parameters={"a": {}}), ["the request: expected parameter 'a' to be a string, a number or a boolean, got {} (object)"]),
    ("parameter an array", replaced(parameters={"a": [1]}), ["the request: expected parameter 'a' to be a string, a number or a boolean, got [1] (array)"]),
    ("parameter null", replaced(parameters={"a": None}), ["expected parameter 'a' to be a string, a number or a boolean, got null"]),
    ("too many parameters", replaced(parameters={f"p{i}": i for i in range(65)}), ['the request: expected at most 64 "parameters", got 65']),
    ("long parameter name", replaced(parameters={"n" * 129: 1}), ['expected "parameters" named in at most 128 characters, got 129']),
    ("long parameter string", replaced(parameters={"a": "s" * 1025}), ["expected parameter 'a' to be a string of at most 1024 characters, got 1025"]),
    ("tensor parameter nested", with_tensor(1, parameters={"content_type": {"x": 1}}), ["input 'sepal_width': expected parameter 'content_type' to be a string, a number or a boolean, got {\"x\": 1} (object)"]),
    ("tensor parameters too many", with_tensor(0, parameters={f"p{i}": True for i in range(65)}), ['input \'sepal_length\': expected at most 64 "parameters", got 65']),
    ("output parameter nested", replaced(outputs=[{"name": "label", "parameters": {"a": [[]]}}]), ["outputs[0]: expected parameter 'a' to be a string, a number or a boolean, got [[]] (array)"]),
    ("tensor not an object", lambda body: {**body, "inputs": [*body["inputs"], 5]}, ['inputs[4]: expected a tensor object with a "name"']),
    ("missing tensor", lambda body: {**body, "inputs": body["inputs"][1:]}, ["expected one input tensor per feature", "missing ['sepal_length']"]),
    ("unexpected tensor", lambda body: {**body, "inputs": [*body["inputs"], {**body["inputs"][0], "name": "colour"}]}, ["unexpected ['colour']"]),
    ("tensor twice", lambda body: {**body, "inputs": [*body["inputs"], body["inputs"][0]]}, ["got 'sepal_length' twice"]),
    ("unknown tensor key", with_tensor(1, contents=[]), ["input 'sepal_width': expected only the keys", "['contents']"]),
    ("bytes for a number", with_tensor(0, datatype="BYTES"), ["input 'sepal_length': expected datatype FP32 or FP64 or INT32 or INT64 for a number feature, got 'BYTES'"]),
    ("unknown datatype", with_tensor(0, datatype="FP16"), ["input 'sepal_length': expected datatype", "got 'FP16'"]),
    ("no datatype", without("datatype", 2), ["input 'petal_length': expected datatype", "got null"]),
    ("matrix shape", with_tensor(0, shape=[2, 2]), ["input 'sepal_length': expected shape [N] or [N, 1] (one value per row), got [2, 2]"]),
    ("three dimensions", with_tensor(0, shape=[4, 1, 1]), ["expected shape [N] or [N, 1]", "got [4, 1, 1]"]),
    ("negative size", with_tensor(0, shape=[-1]), ["expected shape [N] or [N, 1]", "got [-1]"]),
    ("string shape", with_tensor(0, shape="4"), ["expected shape [N] or [N, 1]", '"4" (string)']),
    ("boolean size", with_tensor(0, shape=[True]), ["expected shape [N] or [N, 1]", "[true]"]),
    ("data not a list", with_tensor(3, data=5.1), ["input 'petal_width': expected \"data\" to be a list of 4 values, got 5.1 (number)"]),
    ("no data", without("data", 3), ["input 'petal_width': expected \"data\" to be a list of 4 values, got null"]),
    ("fewer values than the shape", with_tensor(1, data=[3.5, 3.0]), ["input 'sepal_width': expected 4 values for shape [4], got 2"]),
    ("rows differ", with_tensor(1, shape=[2], data=[3.5, 3.0]), ["expected every input tensor to have the same number of rows", "'sepal_width': 2"]),
    ("no rows", lambda body: {**body, "inputs": [{**t, "shape": [0], "data": []} for t in body["inputs"]]}, ["expected at least 1 row in the input tensors"]),
    ("nested for shape [N]", with_tensor(0, data=[[5.1], [6.2], [7.7], [5.9]]), ["input 'sepal_length' data[0]: expected a finite number, got [5.1] (array)"]),
    ("badly nested", with_tensor(0, shape=[4, 1], data=[[5.1], [6.2, 1.0], [7.7], [5.9]]), ["input 'sepal_length' data[1]: expected [value] as the shape is [4, 1], got [6.2, 1.0] (array)"]),
    ("string in a number tensor", with_tensor(2, data=[1.4, "4.3", 6.1, 5.1]), ["input 'petal_length' data[1]: expected a finite number, got \"4.3\" (string)"]),
    ("null in a number tensor", with_tensor(2, data=[1.4, 4.3, None, 5.1]), ["input 'petal_length' data[2]: expected a finite number, got null"]),
    ("float in an INT32 tensor", with_tensor(0, datatype="INT32", data=[5, 6.5, 7, 5]), ["input 'sepal_length' data[1]: expected an integer of datatype INT32, got 6.5 (number)"]),
    ("INT32 out of range", with_tensor(0, datatype="INT32", data=[5, 2**31, 7, 5]), ["data[1]: expected an integer of datatype INT32, got 2147483648"]),
    ("boolean in an INT64 tensor", with_tensor(0, datatype="INT64", data=[5, True, 7, 5]), ["data[1]: expected an integer of datatype INT64, got true (boolean)"]),
    ("unknown output", replaced(outputs=[{"name": "scores"}]), ["outputs[0]: expected an output named one of ['label', 'probabilities'], got 'scores'"]),
    ("output without a name", replaced(outputs=["label"]), ["outputs[0]: expected an output named one of", '"label" (string)']),
    ("outputs not a list", replaced(outputs={"name": "label"}), ['expected "outputs" to be a list']),
    # The binary tensor extension, each way a client asks for it.
    ("binary outputs for all", replaced(parameters={"binary_data_output": True}), ['got parameters {"binary_data_output": true}', JSON_TENSORS_ONLY]),
    ("binary output", replaced(outputs=[{"name": "label", "parameters": {"binary_data": True}}]), ['outputs[0]: expected a JSON output, got parameters {"binary_data": true}', JSON_TENSORS_ONLY]),
    ("binary input", with_tensor(0, parameters={"binary_data_size": 32}), ["input 'sepal_length': expected JSON data, got binary data", JSON_TENSORS_ONLY]),
]  # fmt: skip


@pytest.mark.parametrize("case, change, words", REFUSALS, ids=[case for case, _, _ in REFUSALS])
def test_a_malformed_request_is_a_400_saying_what_was_expected(client, case, change, words):
    response = infer(client, change(iris_request()))

    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]
    for word in words:
        assert word in response.json()["error"]


def test_parameters_at_their_bounds_are_answered(client):
    flat = {f"p{i:02d}" + "n" * 125: ("s" * 1024, 1.5, -3, True)[i % 4] for i in range(64)}
    body = iris_request(parameters=flat, outputs=[{"name": "label", "parameters": flat}])
    for tensor in body["inputs"]:
        tensor["parameters"] = flat

    response = infer(client, body)

    assert response.status_code == 200, response.text
    assert list(outputs_of(response)) == [LABEL_OUTPUT]


def test_a_request_for_binary_outputs_that_asks_for_json_ones_too_is_answered(client):
    body = iris_request(
        parameters={"binary_data_output": False},
        outputs=[{"name": "label", "parameters": {"binary_data": False}}],
    )

    assert list(outputs_of(infer(client, body))) == [LABEL_OUTPUT]


def test_a_string_tensor_for_a_categorical_feature_must_be_bytes(shop):
    body = shop_request(shop_rows(2, seed=15))
    body["inputs"][0]["datatype"] = "FP32"
    numbers = shop_request(shop_rows(2, seed=15))
    numbers["inputs"][0]["data"][0] = 3

    wrong_type = infer(shop, body, name="shop")
    number = infer(shop, numbers, name="shop")

    assert wrong_type.status_code == number.status_code == 400
    assert wrong_type.json()["error"] == "input 'color': expected datatype BYTES for a string feature, got 'FP32'"
    assert number.json()["error"].startswith("input 'color' data[0]: expected a string, one of the 3 known categories, got 3")


def test_a_binary_body_is_refused_before_it_is_parsed(client):
    header = json.dumps({"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}]})
    body = header.encode() + np.array([5.1]).tobytes()

    response = client.post(
        INFER_PATHS[0].format(name="iris"),
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith(
        f"expected a JSON body, got binary tensors (Inference-Header-Content-Length: '{len(header)}')"
    )
    assert "set_data_from_numpy(array, binary_data=False)" in response.json()["error"]


def test_long_names_are_cut_in_errors(client):
    long_name = "x" * 5000

    unexpected = infer(client, iris_request(outputs=[{"name": long_name}]))
    wrong_type = infer(client, with_tensor(0, datatype=long_name)(iris_request()))
    model = client.get(MODEL_PATHS[0].format(name=long_name))

    for response in (unexpected, wrong_type, model):
        assert 400 <= response.status_code < 500
        assert len(response.json()["error"]) < 400
        assert "x" * (PREVIEW_CHARS + 1) not in response.json()["error"]


def test_the_infer_route_takes_post_only(client):
    response = client.get(INFER_PATHS[0].format(name="iris"))

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_a_seed_route_points_a_v2_body_to_the_v2_route(client):
    response = post(client, iris_request())

    assert response.status_code == 400
    assert "or Open Inference Protocol V2 tensors to POST /v2/models/iris/infer" in response.json()["error"]


def test_a_200_never_carries_a_non_finite_number(client):
    rows = [[1e30] * 4, [5.1, 1e200, 1.4, -1e200], [-7.5e9, 3.5, 1.4, 0.2]]

    response = infer(client, iris_request(rows))

    assert response.status_code in (200, 422)
    if response.status_code == 200:
        for output in json.loads(response.content)["outputs"]:
            if output["datatype"] != "BYTES":
                assert all(math.isfinite(value) for value in output["data"])
