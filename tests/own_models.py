"""Users' models, fitted for real on small made-up data and exported with `training.export`:
a random forest pipeline with a categorical column, and a gradient-boosted regressor."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.export import export_model

COLORS = ("blue", "green", "red")
SHOP_FEATURES = ("color", "size", "weight")
SHOP_CLASSES = ("no", "yes")


@dataclass(frozen=True)
class ServedModel:
    estimator: Pipeline
    path: Path
    version: str


def shop_rows(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "color": rng.choice(COLORS, rows),
            "size": rng.normal(10.0, 3.0, rows).round(2),
            "weight": rng.normal(50.0, 20.0, rows).round(1),
        }
    )


def bought(frame: pd.DataFrame) -> np.ndarray:
    return np.where((frame["color"] == "red") | (frame["size"] > 11), "yes", "no")


def price(frame: pd.DataFrame) -> np.ndarray:
    return 3.0 * frame["size"] + 0.5 * frame["weight"] + np.where(frame["color"] == "red", 20.0, 0.0)


def export_classifier(directory: Path) -> ServedModel:
    """A random forest behind one-hot encoding that refuses unknown colours (inside onnxruntime
    that refusal would be a failure of the run), with the sample's first row as the example."""
    frame = shop_rows(120, seed=0)
    prepare = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="error"), ["color"]),
            ("numeric", StandardScaler(), ["size", "weight"]),
        ]
    )
    estimator = Pipeline(
        [("prepare", prepare), ("model", RandomForestClassifier(n_estimators=15, random_state=0))]
    ).fit(frame, bought(frame))
    path = directory / "shop.onnx"
    exported = export_model(estimator, frame, path, name="shop", example_row=True)
    return ServedModel(estimator, path, exported.version)


def export_regressor(directory: Path) -> ServedModel:
    frame = shop_rows(120, seed=1)
    prepare = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore"), ["color"])],
        remainder="passthrough",
    )
    estimator = Pipeline(
        [("prepare", prepare), ("model", GradientBoostingRegressor(n_estimators=30, random_state=0))]
    ).fit(frame, price(frame))
    path = directory / "price.onnx"
    exported = export_model(estimator, frame, path, name="price")
    return ServedModel(estimator, path, exported.version)


ZONES = (1, 2, 3)
ZONE_FEATURES = ("zone", "area")


def zone_rows(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"zone": rng.choice(ZONES, rows), "area": rng.normal(80.0, 20.0, rows).round(1)})


def export_zone_classifier(directory: Path) -> ServedModel:
    """A random forest behind one-hot encoding of a whole-number column, `zone`, that refuses
    unknown codes; exported without an example row, as the export command does by default."""
    frame = zone_rows(120, seed=0)
    prepare = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="error"), ["zone"]),
            ("numeric", StandardScaler(), ["area"]),
        ]
    )
    estimator = Pipeline(
        [("prepare", prepare), ("model", RandomForestClassifier(n_estimators=10, random_state=0))]
    ).fit(frame, np.where((frame["zone"] == 3) | (frame["area"] > 90), "yes", "no"))
    path = directory / "zones.onnx"
    exported = export_model(estimator, frame, path, name="zones")
    return ServedModel(estimator, path, exported.version)
