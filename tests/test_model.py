"""The loader, called directly with local paths, and the lazy once-per-process singleton."""

import json
import os
import re
import threading
import time

import numpy as np
import onnx
import pytest
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx

from function.errors import INVALID_MODEL, ModelUnavailable
from function.model import (
    CLASSES_KEY,
    FEATURES_KEY,
    FIRST_RETRY_SECONDS,
    LONGEST_RETRY_SECONDS,
    SCORES_KEY,
    SKLEARN_VERSION_KEY,
    VERSION_KEY,
    LazyModel,
    load_model,
    model_from_bytes,
)
from training.train import CLASS_NAMES, FEATURE_NAMES


def onnx_with(model: LogisticRegression, width: int, props: dict[str, str]) -> bytes:
    proto = to_onnx(model, np.zeros((1, width)), options={id(model): {"zipmap": False}})
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


IRIS_PROPS = {FEATURES_KEY: json.dumps(list(FEATURE_NAMES)), CLASSES_KEY: json.dumps(list(CLASS_NAMES))}


def test_a_model_that_answers_nan_to_everything_fails_the_load_as_invalid(trained, make_client, tmp_path, capsys):
    # Exported with skl2onnx directly: the exporter's parity check would refuse it.
    model = LogisticRegression(max_iter=500).fit(trained.features, trained.model.predict(trained.features))
    model.coef_[:] = np.nan
    path = tmp_path / "nan.onnx"
    path.write_bytes(onnx_with(model, len(FEATURE_NAMES), IRIS_PROPS))

    with pytest.raises(ModelUnavailable, match=r"expected finite numbers from the model on the example row .*got \[nan, nan, nan\]: the model is broken") as refused:
        model_from_bytes(path.read_bytes(), str(path))
    assert refused.value.kind == INVALID_MODEL
    assert "features" not in refused.value.detail  # the rows are not to blame

    client = make_client(MODEL_URI=str(path))
    response = client.post("/predict", json=dict(zip(FEATURE_NAMES, [5.1, 3.5, 1.4, 0.2], strict=True)))
    assert response.status_code == 503
    assert response.json()["error"].startswith("the model is unavailable (invalid model)")
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert "the model is broken" in logged[-1]["message"]


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


@pytest.mark.parametrize(
    "props, words",
    [
        ({}, "expected metadata 'features' (or 'feature_names') listing the features"),
        ({FEATURES_KEY: "not json", CLASSES_KEY: json.dumps(list(CLASS_NAMES))}, "expected metadata 'feature_names' as a JSON list of names"),
        ({FEATURES_KEY: "[]", CLASSES_KEY: "[1, 2]"}, "expected metadata 'feature_names' as a JSON list of names"),
        ({FEATURES_KEY: json.dumps(list(FEATURE_NAMES))}, "expected metadata 'classes' (or 'class_names') listing the classes"),
    ],
)  # fmt: skip
def test_model_without_name_metadata_is_refused(trained, props, words):
    data = onnx_with(trained.model, 4, props)

    with pytest.raises(ModelUnavailable, match=re.escape(words)):
        model_from_bytes(data, "m.onnx")


def test_version_falls_back_to_a_content_hash(trained):
    data = onnx_with(trained.model, 4, IRIS_PROPS)

    assert model_from_bytes(data, "m.onnx").version == model_from_bytes(data, "m.onnx").version
    assert len(model_from_bytes(data, "m.onnx").version) == 16


@pytest.mark.parametrize(
    "key, value",
    [
        (VERSION_KEY, "v1\r\nX-Injected: 1"),
        (VERSION_KEY, "v1\n"),
        (VERSION_KEY, " v1"),
        (VERSION_KEY, "v" * 129),
        (VERSION_KEY, "caf\u00e9"),
        (VERSION_KEY, "v1/2"),
        (VERSION_KEY, ".."),
        (SCORES_KEY, "not json"),
        (SCORES_KEY, "[0.9]"),
        (SCORES_KEY, '{"train": "high"}'),
        (SCORES_KEY, '{"train": NaN}'),
        (SCORES_KEY, '{"train": true}'),
        (SCORES_KEY, "[" * 5000 + "]" * 5000),
        (SKLEARN_VERSION_KEY, "1.9\n"),
        (FEATURES_KEY, json.dumps(["a", "a", "b", "c"])),
        (FEATURES_KEY, json.dumps(["instances", "b", "c", "d"])),
        (CLASSES_KEY, json.dumps(["x", "y", "x"])),
        (CLASSES_KEY, json.dumps(["x", "", "z"])),
    ],
)  # fmt: skip
def test_metadata_the_service_reads_is_checked_at_load_naming_the_field(trained, key, value):
    data = onnx_with(trained.model, 4, {**IRIS_PROPS, SCORES_KEY: "{}", key: value})

    with pytest.raises(ModelUnavailable, match=f"metadata '{key}'") as raised:
        model_from_bytes(data, "m.onnx")

    assert raised.value.kind == "invalid model"
    assert len(str(raised.value)) < 400


def test_metadata_written_by_make_train_loads(model_file, trained):
    model = load_model(str(model_file), timeout=5)

    assert model.metadata["scores"] == trained.scores
    assert model.version.isalnum()


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "model.onnx"
    os.mkfifo(path)

    with pytest.raises(ModelUnavailable, match="expected a regular file, got a FIFO"):
        load_model(str(path), timeout=5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), ("/", "a directory")])
def test_a_local_model_uri_must_be_a_regular_file(path, kind):
    with pytest.raises(ModelUnavailable, match=f"expected a regular file, got {kind}"):
        load_model(path, timeout=5, max_bytes=1024 * 1024)


def test_a_model_over_the_cap_is_refused(model_file):
    size = model_file.stat().st_size

    with pytest.raises(ModelUnavailable, match=f"expected at most MODEL_MAX_BYTES={size - 1} bytes, got {size}") as raised:
        load_model(str(model_file), timeout=5, max_bytes=size - 1)
    assert raised.value.kind == "too large"
    assert load_model(str(model_file), timeout=5, max_bytes=size).features == FEATURE_NAMES


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoader:
    """A real load, slowed down so that racing callers overlap, and counted."""

    def __init__(self, path, failures=0, delay=0.2):
        self.path, self.failures, self.delay = str(path), failures, delay
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        time.sleep(self.delay)
        if self.calls <= self.failures:
            raise ModelUnavailable(f"attempt {self.calls} failed", kind="timeout")
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


def test_callers_share_a_failed_attempt_then_get_its_error_at_once_until_the_back_off_ends(model_file):
    clock = Clock()
    loader = CountingLoader(model_file, failures=1)
    lazy = LazyModel(loader, clock=clock)

    results = race(lazy, 8)

    assert loader.calls == 1
    assert all(isinstance(result, ModelUnavailable) for result in results)
    assert {result.retry_after for result in results} == {results[0].retry_after}
    assert FIRST_RETRY_SECONDS / 2 <= results[0].retry_after <= FIRST_RETRY_SECONDS
    assert results[0].headers["Retry-After"] == "1"
    assert lazy.loaded is None

    clock.now += results[0].retry_after / 2
    with pytest.raises(ModelUnavailable) as during:
        lazy.get()
    assert loader.calls == 1
    assert during.value.retry_after == pytest.approx(results[0].retry_after / 2)

    clock.now += results[0].retry_after
    model = lazy.get()
    assert loader.calls == 2
    assert lazy.get() is model
    assert loader.calls == 2


def test_the_back_off_doubles_with_jitter_up_to_its_longest(model_file):
    clock = Clock()
    loader = CountingLoader(model_file, failures=12, delay=0)
    lazy = LazyModel(loader, clock=clock)

    waits = []
    for attempt in range(1, 11):
        with pytest.raises(ModelUnavailable) as raised:
            lazy.get()
        assert loader.calls == attempt
        waits.append(raised.value.retry_after)
        clock.now += raised.value.retry_after

    for failures, wait in enumerate(waits, start=1):
        longest = min(LONGEST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
        assert longest / 2 <= wait <= longest
    assert max(waits) <= LONGEST_RETRY_SECONDS < 240
    assert len(set(waits)) == len(waits)


def test_a_loader_that_raises_anything_still_answers_every_waiter():
    def broken(*args):
        time.sleep(0.1)
        raise KeyError("a bug")

    results = race(LazyModel(broken), 4)

    assert all(isinstance(result, ModelUnavailable) for result in results)
    assert "KeyError" in str(results[0])
