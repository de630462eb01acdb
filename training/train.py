"""Train the seed's iris classifier and export it to ONNX: `make train`.

Reproduces the seed exactly (same splits, same LogisticRegression), then writes it through the
same exporter as any user's model (`training.export`): checked against scikit-learn first.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from function.model import VERSION_KEY
from function.settings import DEFAULT_MODEL_URI
from training.export import (
    Exported,
    ExportError,
    ParityError,
    build,
    check_parity,
    sample_frame,
    write_file,
)

__all__ = ["ParityError"]  # raised by write_model; callers import it from here

FEATURE_NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASS_NAMES = ("setosa", "versicolor", "virginica")
MODEL_NAME = "iris"
RANDOM_STATE = 42


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
    """The ONNX file's bytes: one float64 input `input` of shape [N, 4], metadata inside."""
    return _build(trained).data


def _build(trained: Trained) -> Exported:
    return build(
        trained.model,
        trained.features,
        name=MODEL_NAME,
        feature_names=FEATURE_NAMES,
        class_names=CLASS_NAMES,
        scores=trained.scores,
    )


@dataclass(frozen=True)
class Written:
    version: str
    size: int
    parity_gap: float


def write_model(output: Path, data: bytes, trained: Trained) -> Written:
    """Writes `data` to `output` only if it answers as `trained.model` on every iris row.

    ParityError otherwise, and nothing is written.
    """
    parity = check_parity(data, trained.model, sample_frame(trained.features, FEATURE_NAMES))
    write_file(output, data)
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    return Written(version=props[VERSION_KEY], size=len(data), parity_gap=parity.gap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(DEFAULT_MODEL_URI))
    args = parser.parse_args(argv)

    trained = train()
    print("Train score: ", trained.scores["train"])
    print("Valid score: ", trained.scores["valid"])
    print("Test score: ", trained.scores["test"])
    try:
        exported = _build(trained)
        write_file(args.output, exported.data)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output} ({len(exported.data)} bytes, version {exported.version}); onnxruntime "
        f"matches scikit-learn within {exported.parity.gap:.1e} on {exported.parity.rows} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
