"""`make train`: the seed's model, exported to ONNX, checked against scikit-learn before it is written."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import sklearn
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from function.model import (
    CLASSES_KEY,
    FEATURES_KEY,
    SCORES_KEY,
    SKLEARN_VERSION_KEY,
    VERSION_KEY,
    load_model,
)
from tests.helpers import ROOT, SEED_REQUEST, SEED_SETOSA_PROBABILITY
from training.train import CLASS_NAMES, FEATURE_NAMES, ParityError, Trained, export, write_model


def test_training_reproduces_the_seed_answer(trained, model_file):
    model = load_model(str(model_file), timeout=5)

    probabilities = model.predict_proba([[SEED_REQUEST[name] for name in FEATURE_NAMES]])[0]

    assert probabilities[0] == pytest.approx(SEED_SETOSA_PROBABILITY, abs=1e-6)
    assert CLASS_NAMES[int(probabilities.argmax())] == "setosa"


def test_training_uses_the_seed_splits(trained):
    # 150 rows: 10% test (15), then 25% of the remaining 135 for validation (34), 101 to train.
    assert trained.model.n_features_in_ == 4
    assert set(trained.scores) == {"train", "valid", "test"}
    assert trained.scores["train"] == pytest.approx(trained.model.score(*_train_rows(trained)))


def _train_rows(trained: Trained):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    iris = load_iris()
    X_tv, _, y_tv, _ = train_test_split(iris.data, iris.target, test_size=0.1, random_state=42)
    X_train, _, y_train, _ = train_test_split(X_tv, y_tv, test_size=0.25, random_state=42)
    assert len(X_train) == 101
    return X_train, y_train


def test_onnx_equals_scikit_learn_on_every_iris_row(trained, model_file):
    model = load_model(str(model_file), timeout=5)

    served = model.predict_proba(trained.features.tolist())

    assert served.shape == (150, 3)
    assert served.dtype == np.float64
    assert np.abs(served - trained.model.predict_proba(trained.features)).max() <= 1e-9


def test_export_carries_its_metadata(trained, model_bytes):
    props = {p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props}

    assert props[FEATURES_KEY] == '["sepal_length", "sepal_width", "petal_length", "petal_width"]'
    assert props[CLASSES_KEY] == '["setosa", "versicolor", "virginica"]'
    assert json.loads(props["classes"]) == list(CLASS_NAMES)
    assert json.loads(props["features"]) == [
        {"name": name, "type": "number"} for name in FEATURE_NAMES
    ]
    assert props["model_name"] == "iris"
    assert props["task"] == "classification"
    assert json.loads(props[SCORES_KEY]) == trained.scores
    assert props[SKLEARN_VERSION_KEY] == sklearn.__version__
    assert "example" not in props
    assert len(props[VERSION_KEY]) == 16


def test_iris_keeps_one_double_matrix_input_the_service_reads(model_file):
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])

    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("input", "tensor(double)", [None, 4])
    ]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        ("label", "tensor(int64)", [None]),
        ("probabilities", "tensor(double)", [None, 3]),
    ]


def _export_the_old_way(trained: Trained) -> bytes:
    """training.train.export as it was before the general exporter: the reference for iris."""
    proto = to_onnx(
        trained.model,
        trained.features[:1].astype(np.float64),
        options={id(trained.model): {"zipmap": False}},
    )
    metadata = {
        FEATURES_KEY: json.dumps(list(FEATURE_NAMES)),
        CLASSES_KEY: json.dumps(list(CLASS_NAMES)),
        SCORES_KEY: json.dumps(trained.scores),
        SKLEARN_VERSION_KEY: sklearn.__version__,
    }
    onnx.helper.set_model_props(proto, metadata)
    version = hashlib.sha256(proto.SerializeToString()).hexdigest()[:16]
    onnx.helper.set_model_props(proto, {**metadata, VERSION_KEY: version})
    return proto.SerializeToString()


def test_the_exporter_answers_byte_for_byte_as_the_old_iris_export(trained, model_bytes):
    rows = trained.features.astype(np.float64)
    old = onnxruntime.InferenceSession(
        _export_the_old_way(trained), providers=["CPUExecutionProvider"]
    )
    new = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])

    old_labels, old_probabilities = old.run(None, {old.get_inputs()[0].name: rows})
    new_labels, new_probabilities = new.run(None, {"input": rows})

    assert new_probabilities.dtype == old_probabilities.dtype == np.float64
    assert new_probabilities.tobytes() == old_probabilities.tobytes()
    assert new_labels.tobytes() == old_labels.tobytes()


def test_version_follows_the_content(trained, model_bytes):
    again = export(trained)
    other = Trained(
        model=LogisticRegression(random_state=42, C=0.5).fit(
            trained.features, np.arange(150) // 50
        ),
        scores=trained.scores,
        features=trained.features,
    )

    assert again == model_bytes
    assert _version(export(other)) != _version(model_bytes)


def _version(data: bytes) -> str:
    return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}[VERSION_KEY]


def test_a_model_that_disagrees_with_scikit_learn_is_not_written(trained, tmp_path):
    other = LogisticRegression(random_state=42, C=0.01).fit(trained.features, np.arange(150) // 50)
    disagreeing = export(Trained(model=other, scores=trained.scores, features=trained.features))
    output = tmp_path / "model.onnx"

    with pytest.raises(ParityError, match="disagree on .* of 150 sample rows"):
        write_model(output, disagreeing, trained)

    assert list(tmp_path.iterdir()) == []


def test_make_train_prints_the_seed_scores_and_writes_the_model(tmp_path):
    output = tmp_path / "artifacts" / "model.onnx"

    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [
        "Train score",
        "Valid score",
        "Test score",
    ]
    assert f"wrote {output}" in lines[3]
    assert load_model(str(output), timeout=5).classes == CLASS_NAMES
