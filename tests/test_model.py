"""The loader, called directly with local paths, and the lazy once-per-process singleton."""

import json
import threading
import time

import numpy as np
import onnx
import pytest
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx

from function.errors import ModelUnavailable
from function.model import CLASSES_KEY, FEATURES_KEY, LazyModel, load_model, model_from_bytes
from training.train import CLASS_NAMES, FEATURE_NAMES


def onnx_with(model: LogisticRegression, width: int, props: dict[str, str]) -> bytes:
    proto = to_onnx(model, np.zeros((1, width)), options={id(model): {"zipmap": False}})
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


IRIS_PROPS = {FEATURES_KEY: json.dumps(list(FEATURE_NAMES)), CLASSES_KEY: json.dumps(list(CLASS_NAMES))}


def test_loads_a_local_model_with_its_metadata(model_file, trained):
    model = load_model(str(model_file), timeout=5)

    assert model.features == FEATURE_NAMES
    assert model.classes == CLASS_NAMES
    assert model.metadata["scores"] == trained.scores
    assert np.abs(model.predict_proba(trained.features.tolist()) - trained.model.predict_proba(trained.features)).max() <= 1e-9


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.onnx"

    with pytest.raises(ModelUnavailable, match=f"cannot load model {path}: No such file"):
        load_model(str(path), timeout=5)


def test_corrupt_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"this is not a model")

    with pytest.raises(ModelUnavailable, match=f"cannot load model {path}: not a valid ONNX model"):
        load_model(str(path), timeout=5)


def test_model_of_the_wrong_input_width_is_refused(trained):
    three_features = LogisticRegression().fit(trained.features[:, :3], np.arange(150) % 3)
    data = onnx_with(three_features, 3, IRIS_PROPS)

    with pytest.raises(ModelUnavailable, match=r"expected a float input of shape \[N, 4\] for 4 features"):
        model_from_bytes(data, "gs://b/wrong.onnx")


def test_model_with_fewer_classes_than_its_metadata_is_refused(trained):
    two_classes = LogisticRegression().fit(trained.features, np.arange(150) % 2)
    data = onnx_with(two_classes, 4, IRIS_PROPS)

    with pytest.raises(ModelUnavailable, match=r"expected probabilities for 3 classes .* got an output of shape \[1, 2\]"):
        model_from_bytes(data, "m.onnx")


@pytest.mark.parametrize("props", [{}, {FEATURES_KEY: "not json", CLASSES_KEY: json.dumps(list(CLASS_NAMES))}, {FEATURES_KEY: "[]", CLASSES_KEY: "[1, 2]"}])
def test_model_without_name_metadata_is_refused(trained, props):
    data = onnx_with(trained.model, 4, props)

    with pytest.raises(ModelUnavailable, match="expected metadata 'feature_names' as a JSON list of names"):
        model_from_bytes(data, "m.onnx")


def test_version_falls_back_to_a_content_hash(trained):
    data = onnx_with(trained.model, 4, IRIS_PROPS)

    assert model_from_bytes(data, "m.onnx").version == model_from_bytes(data, "m.onnx").version
    assert len(model_from_bytes(data, "m.onnx").version) == 16


class CountingLoader:
    """A real load, slowed down so that racing callers overlap, and counted."""

    def __init__(self, path, failures=0, delay=0.2):
        self.path, self.failures, self.delay = str(path), failures, delay
        self.calls = 0

    def __call__(self):
        self.calls += 1
        time.sleep(self.delay)
        if self.calls <= self.failures:
            raise ModelUnavailable(f"attempt {self.calls} failed")
        return load_model(self.path, timeout=5)


def race(lazy: LazyModel, callers: int) -> list:
    barrier = threading.Barrier(callers)
    results: list = [None] * callers

    def call(index):
        barrier.wait()
        try:
            results[index] = lazy.get()
        except ModelUnavailable as error:
            results[index] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_first_calls_load_exactly_once(model_file):
    loader = CountingLoader(model_file)
    lazy = LazyModel(loader)

    results = race(lazy, 32)

    assert loader.calls == 1
    assert all(result is results[0] for result in results)
    assert lazy.loaded is results[0]


def test_callers_waiting_on_a_failed_load_share_its_error_and_the_next_call_retries(model_file):
    loader = CountingLoader(model_file, failures=1)
    lazy = LazyModel(loader)

    results = race(lazy, 8)

    assert loader.calls == 1
    assert all(isinstance(result, ModelUnavailable) for result in results)
    assert lazy.loaded is None
    model = lazy.get()
    assert loader.calls == 2
    assert lazy.get() is model
    assert loader.calls == 2
