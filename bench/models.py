"""The two models the benchmark serves, as ONNX files the service loads, and onnxruntime alone on them.

The seed's logistic regression comes from `training.train`. The second is a random forest on
iris: its hundred trees make onnxruntime's own call most of a batch's time, where the logistic
regression's call is a small part of it, so the report shows what the service adds to each.
"""

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from skl2onnx import to_onnx

from function.model import CLASSES_KEY, FEATURES_KEY, SCORES_KEY, SKLEARN_VERSION_KEY, VERSION_KEY
from training import train as seed

FOREST_TREES = 100
# float32 is what onnxruntime's tree ensembles take; scikit-learn's trees also split on float32,
# so only the summed probabilities may differ, by float32 rounding.
FOREST_PARITY_TOLERANCE = 1e-5
SEED_ROW = (5.1, 3.5, 1.4, 0.2)


class ForestParityError(RuntimeError):
    """onnxruntime disagrees with scikit-learn on the forest: the benchmark would measure another model."""


@dataclass(frozen=True)
class BenchModel:
    name: str
    path: Path
    parity_gap: float


def logistic_regression(directory: Path) -> BenchModel:
    trained = seed.train()
    path = directory / "logistic-regression.onnx"
    written = seed.write_model(path, seed.export(trained), trained)
    return BenchModel("logistic regression", path, written.parity_gap)


def random_forest(directory: Path) -> BenchModel:
    """A fixed random forest on iris, exported as `training.train` exports the seed's model.

    One float32 input of shape [N, 4], probabilities as a plain tensor, and the same metadata keys,
    so the service loads it unchanged. ForestParityError if onnxruntime disagrees with scikit-learn.
    """
    iris = load_iris()
    X_train, X_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.25, random_state=seed.RANDOM_STATE
    )
    forest = RandomForestClassifier(n_estimators=FOREST_TREES, random_state=seed.RANDOM_STATE)
    forest.fit(X_train, y_train)
    proto = to_onnx(forest, X_train[:1].astype(np.float32), options={id(forest): {"zipmap": False}})
    metadata = {
        FEATURES_KEY: json.dumps(list(seed.FEATURE_NAMES)),
        CLASSES_KEY: json.dumps(list(seed.CLASS_NAMES)),
        SCORES_KEY: json.dumps({"train": forest.score(X_train, y_train), "test": forest.score(X_test, y_test)}),
        SKLEARN_VERSION_KEY: sklearn.__version__,
    }
    onnx.helper.set_model_props(proto, metadata)
    version = hashlib.sha256(proto.SerializeToString()).hexdigest()[:16]
    onnx.helper.set_model_props(proto, {**metadata, VERSION_KEY: version})
    data = proto.SerializeToString()

    session = _session(data)
    feed = {session.get_inputs()[0].name: iris.data.astype(np.float32)}
    served = session.run([_probabilities(session)], feed)[0]
    expected = forest.predict_proba(iris.data)
    gap = float(np.abs(served - expected).max())
    if not (gap <= FOREST_PARITY_TOLERANCE and (served.argmax(1) == expected.argmax(1)).all()):
        raise ForestParityError(
            f"onnxruntime and scikit-learn differ by {gap:.3g} on {len(iris.data)} iris rows "
            f"(expected at most {FOREST_PARITY_TOLERANCE:g} and the same classes)"
        )
    path = directory / "random-forest.onnx"
    path.write_bytes(data)
    return BenchModel(f"random forest ({FOREST_TREES} trees)", path, gap)


def batch_rows(count: int) -> list[list[float]]:
    """`count` rows cycling through the 150 iris rows: the same rows for the service and onnxruntime alone."""
    return np.resize(load_iris().data, (count, 4)).tolist()


def onnxruntime_alone(model: BenchModel, rows: list[list[float]], *, core: int, seconds: float) -> dict:
    """`session.run` on one row and on `rows`, in this process pinned to `core`, as the service calls it.

    The same session options as the service (one intra-op and one inter-op thread) and inputs built
    in advance, so only onnxruntime's call is timed. Five rounds of each, `seconds` in all; per-call times.
    """
    session = _session(model.path.read_bytes())
    (only,) = session.get_inputs()
    dtype = {"tensor(double)": np.float64, "tensor(float)": np.float32}[only.type]
    output_name = _probabilities(session)
    run_options = onnxruntime.RunOptions()
    single = {only.name: np.array([SEED_ROW], dtype=dtype)}
    batch = {only.name: np.array(rows, dtype=dtype)}

    def per_call_s(feed: dict, budget: float) -> float:
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < budget:
            for _ in range(10):
                session.run([output_name], feed, run_options)
            calls += 10
        return elapsed / calls

    with _pinned(core):
        per_call_s(single, 0.05)  # warm-up: first calls allocate
        single_s = [per_call_s(single, seconds / 10) for _ in range(5)]
        batch_s = [per_call_s(batch, seconds / 10) for _ in range(5)]
    return {"single_us": [s * 1e6 for s in single_s], "batch_ms": [s * 1e3 for s in batch_s]}


def _session(data: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _probabilities(session: onnxruntime.InferenceSession) -> str:
    """The output the service reads: the first float tensor (the other is the int64 label)."""
    return next(o.name for o in session.get_outputs() if o.type in ("tensor(float)", "tensor(double)"))


@contextmanager
def _pinned(core: int):
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
