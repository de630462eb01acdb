"""Train the seed's iris classifier and export it to ONNX: `make train`.

Reproduces the seed exactly (same splits, same LogisticRegression), then writes an ONNX file
that carries its own metadata and that is checked against scikit-learn before it is written.
"""

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from skl2onnx import to_onnx

from function.model import (
    CLASSES_KEY,
    FEATURES_KEY,
    SCORES_KEY,
    SKLEARN_VERSION_KEY,
    VERSION_KEY,
    model_from_bytes,
)
from function.settings import DEFAULT_MODEL_URI

FEATURE_NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASS_NAMES = ("setosa", "versicolor", "virginica")
RANDOM_STATE = 42
PARITY_TOLERANCE = 1e-9


class ParityError(RuntimeError):
    """onnxruntime disagrees with scikit-learn: the file is not written."""


@dataclass(frozen=True)
class Trained:
    model: LogisticRegression
    scores: dict[str, float]
    features: np.ndarray  # all 150 rows, for the parity check


def train() -> Trained:
    iris = load_iris()
    X, y = iris.data, iris.target
    X_train_valid, X_test, y_train_valid, y_test = train_test_split(
        X, y, test_size=0.1, random_state=RANDOM_STATE
    )
    X_train, X_valid, y_train, y_valid = train_test_split(
        X_train_valid, y_train_valid, test_size=0.25, random_state=RANDOM_STATE
    )
    model = LogisticRegression(random_state=RANDOM_STATE)
    model.fit(X_train, y_train)
    scores = {
        "train": model.score(X_train, y_train),
        "valid": model.score(X_valid, y_valid),
        "test": model.score(X_test, y_test),
    }
    return Trained(model=model, scores=scores, features=X)


def export(trained: Trained) -> bytes:
    """The ONNX file's bytes: float64 input, probabilities as a plain tensor, metadata inside."""
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


@dataclass(frozen=True)
class Written:
    version: str
    size: int
    parity_gap: float


def check_parity(data: bytes, reference: LogisticRegression, features: np.ndarray) -> Written:
    """Loads the export as the service does and compares it with scikit-learn on every row.

    ParityError when any probability differs by more than 1e-9.
    """
    served = model_from_bytes(data, "<export>")
    gap = float(np.abs(served.predict_proba(features.tolist()) - reference.predict_proba(features)).max())
    if not gap <= PARITY_TOLERANCE:
        raise ParityError(
            f"onnxruntime and scikit-learn differ by {gap:.3g} on {len(features)} rows "
            f"(expected at most {PARITY_TOLERANCE:g}); model not written"
        )
    return Written(version=served.version, size=len(data), parity_gap=gap)


def write_model(output: Path, data: bytes, trained: Trained) -> Written:
    """Writes `data` to `output` only if it matches `trained.model` (ParityError otherwise)."""
    written = check_parity(data, trained.model, trained.features)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(data)
    partial.replace(output)  # never leave a half-written model where the service looks
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(DEFAULT_MODEL_URI))
    args = parser.parse_args(argv)

    trained = train()
    print("Train score: ", trained.scores["train"])
    print("Valid score: ", trained.scores["valid"])
    print("Test score: ", trained.scores["test"])
    try:
        written = write_model(args.output, export(trained), trained)
    except ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output} ({written.size} bytes, version {written.version}); onnxruntime "
        f"matches scikit-learn within {written.parity_gap:.1e} on {len(trained.features)} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
