"""Graphs that answer one row but not a batch row by row: refused at load, since the service
stacks rows, from a batch or from concurrent requests, into one run."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

from function.errors import INVALID_MODEL, ModelUnavailable
from function.model import model_from_bytes
from tests.test_model import IRIS_PROPS, onnx_with
from training.train import FEATURE_NAMES


def fixed_batch_of_one(trained) -> bytes:
    """Iris with a batch dimension of 1, as some converters write it."""
    model = LogisticRegression(max_iter=500).fit(trained.features, trained.model.predict(trained.features))
    proto = onnx.load_from_string(onnx_with(model, len(FEATURE_NAMES), IRIS_PROPS))
    for value in [*proto.graph.input, *proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    return proto.SerializeToString()


def mean_of_the_rows() -> bytes:
    """A regressor of any number of rows whose one answer is the mean of them all."""
    nodes = [
        helper.make_node("ReduceMean", ["X", "axes"], ["mean"], keepdims=1),
        helper.make_node("MatMul", ["mean", "w"], ["variable"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["N", 2])],
        [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])],
        [numpy_helper.from_array(np.array([[1.0], [2.0]]), "w"), numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    helper.set_model_props(proto, {"task": "regression", "feature_names": json.dumps(["a", "b"])})
    return proto.SerializeToString()


@pytest.mark.parametrize("build", ["fixed batch of one", "mean of the rows"])
def test_a_graph_that_does_not_answer_each_row_of_a_batch_fails_the_load(trained, make_client, tmp_path, build):
    data = fixed_batch_of_one(trained) if build == "fixed batch of one" else mean_of_the_rows()
    path = tmp_path / "model.onnx"
    path.write_bytes(data)

    with pytest.raises(ModelUnavailable, match=r"expected the model to answer each of 2 rows run together") as refused:
        model_from_bytes(data, str(path))
    assert refused.value.kind == INVALID_MODEL

    # Served, a batch was a 500 or one answer for two rows, and concurrent rows waited forever.
    client = make_client(MODEL_URI=str(path))
    response = client.post("/predict", json={"instances": [[1.0] * len(FEATURE_NAMES)] * 2})
    assert response.status_code == 503
    assert response.json()["error"].startswith("the model is unavailable (invalid model)")


def with_extra_category(path, feature: str, category) -> bytes:
    proto = onnx.load(path)
    for prop in proto.metadata_props:
        if prop.key == "features":
            features = json.loads(prop.value)
            next(f for f in features if f["name"] == feature)["categories"].append(category)
            prop.value = json.dumps(features)
    return proto.SerializeToString()


@pytest.mark.parametrize("model, feature, category", [("shop", "color", "purple"), ("zones", "zone", 4)])
def test_a_category_the_metadata_lists_but_the_graph_refuses_fails_the_load(
    request, make_client, tmp_path, model, feature, category
):
    served = request.getfixturevalue("shop_classifier" if model == "shop" else "zone_classifier")
    path = tmp_path / "edited.onnx"
    path.write_bytes(with_extra_category(served.path, feature, category))

    with pytest.raises(ModelUnavailable, match=rf"lists {category!r} among the categories of {feature!r}, but the model fails on {category!r}") as refused:
        model_from_bytes(path.read_bytes(), str(path))
    assert refused.value.kind == INVALID_MODEL

    # Served, the category passed the request's checks and failed inside the graph: a 500.
    example = make_client(MODEL_URI=str(served.path)).get("/").json()["how_to_call"]["request"]["example"]
    client = make_client(MODEL_URI=str(path))
    response = client.post("/predict", json={**example, feature: category})
    assert response.status_code == 503


def rows_with_a_first_value_of_at_least_zero() -> bytes:
    """A regressor that drops the rows whose first value is negative: as many answers as rows
    for the example row (zeros), fewer for others."""
    nodes = [
        helper.make_node("Gather", ["X", "first"], ["a"], axis=1),
        helper.make_node("GreaterOrEqual", ["a", "zero"], ["keep"]),
        helper.make_node("Compress", ["X", "keep"], ["kept"], axis=0),
        helper.make_node("MatMul", ["kept", "w"], ["variable"]),
    ]
    graph = helper.make_graph(
        nodes,
        "compress",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["N", 2])],
        [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])],
        [
            numpy_helper.from_array(np.array([[1.0], [2.0]]), "w"),
            numpy_helper.from_array(np.array(0, dtype=np.int64), "first"),
            numpy_helper.from_array(np.array(0.0), "zero"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    helper.set_model_props(proto, {"task": "regression", "feature_names": json.dumps(["a", "b"])})
    return proto.SerializeToString()


def test_a_model_answering_fewer_rows_than_it_was_given_is_never_a_short_answer(make_client, tmp_path):
    path = tmp_path / "compress.onnx"
    path.write_bytes(rows_with_a_first_value_of_at_least_zero())
    client = make_client(MODEL_URI=str(path))

    response = client.post("/predict", json={"instances": [[-1.0, 1.0], [1.0, 1.0]]})

    # Not a 200 with one prediction for two rows; alone, such a row waited forever.
    assert response.status_code == 500
    assert client.post("/predict", json={"a": 1.0, "b": 1.0}).json() == {"prediction": 3.0}


def test_a_string_feature_listed_without_categories_but_refusing_unknown_ones_fails_the_load(
    shop_classifier, make_client, tmp_path
):
    # Without categories the metadata lets any string through to the graph.
    proto = onnx.load(shop_classifier.path)
    for prop in proto.metadata_props:
        if prop.key == "features":
            features = json.loads(prop.value)
            del features[0]["categories"]
            prop.value = json.dumps(features)
    path = tmp_path / "any-string.onnx"
    path.write_bytes(proto.SerializeToString())

    with pytest.raises(ModelUnavailable, match=r"takes any string for 'color', but the model fails on 'text'"):
        model_from_bytes(path.read_bytes(), str(path))

    client = make_client(MODEL_URI=str(path))
    assert client.post("/predict", json={"color": "purple", "size": 1.0, "weight": 2.0}).status_code == 503
