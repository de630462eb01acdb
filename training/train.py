"""Train the seed's iris classifier and export it to ONNX: `make train`.

Reproduces the seed exactly (same splits, same LogisticRegression), then writes it through the
same exporter as any user's model (`training.export`): checked against scikit-learn first.
`iris` is the same training as the training job's entry point (`training.job`'s default).
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
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


@dataclass(frozen=True)
class _Splits:
    X: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _splits() -> _Splits:
    iris = load_iris()
    X, y = iris.data, iris.target
    X_train_valid, X_test, y_train_valid, y_test = train_test_split(
        X, y, test_size=0.1, random_state=RANDOM_STATE
    )
    X_train, X_valid, y_train, y_valid = train_test_split(
        X_train_valid, y_train_valid, test_size=0.25, random_state=RANDOM_STATE
    )
    return _Splits(X, X_train, y_train, X_valid, y_valid, X_test, y_test)


def iris() -> tuple[LogisticRegression, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The training job's entry point (`TRAIN_ENTRYPOINT=training.train:iris`, its default):
    the seed's model on the seed's splits, fitted on the class names rather than their codes so
    that the exported file names its classes, with the 15 test rows held out.

    Returns `(estimator, sample, holdout_X, holdout_y)`: all 150 rows are the parity sample.
    """
    splits = _splits()
    names = np.asarray(CLASS_NAMES, dtype=object)
    columns = list(FEATURE_NAMES)
    model = LogisticRegression(random_state=RANDOM_STATE)
    model.fit(pd.DataFrame(splits.X_train, columns=columns), names[splits.y_train])
    sample = pd.DataFrame(splits.X, columns=columns)
    holdout_X = pd.DataFrame(splits.X_test, columns=columns)
    return model, sample, holdout_X, names[splits.y_test]


def train() -> Trained:
    splits = _splits()
    X, X_train, y_train = splits.X, splits.X_train, splits.y_train
    X_valid, y_valid, X_test, y_test = splits.X_valid, splits.y_valid, splits.X_test, splits.y_test
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
