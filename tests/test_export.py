"""`training.export`: real tiny models fitted here, exported, loaded with onnxruntime, refused when wrong."""

import fractions
import hashlib
import io
import json
import pickle
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import sklearn
import skops.io
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from tests.helpers import ROOT
from training.export import (
    EXAMPLE_KEY,
    ExportError,
    ParityError,
    UnsupportedEstimator,
    build,
    export_model,
    main,
)

COLORS = ("blue", "green", "red")


def _shop(rows: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "color": rng.choice(COLORS, rows),
            "size": rng.normal(10.0, 3.0, rows),
            "weight": rng.normal(50.0, 20.0, rows).round(1),
        }
    )


def _bought(frame: pd.DataFrame) -> np.ndarray:
    return np.where((frame["color"] == "red") | (frame["size"] > 11), "yes", "no")


def _price(frame: pd.DataFrame) -> np.ndarray:
    return (
        3.0 * frame["size"] + 0.5 * frame["weight"] + np.where(frame["color"] == "red", 20.0, 0.0)
    )


def _forest_pipeline(frame: pd.DataFrame) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["color"]),
            ("numeric", StandardScaler(), ["size", "weight"]),
        ]
    )
    model = Pipeline(
        [("prepare", prepare), ("model", RandomForestClassifier(n_estimators=10, random_state=0))]
    )
    return model.fit(frame, _bought(frame))


def _props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _signature(path) -> tuple[list, list]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (
        [(i.name, i.type, i.shape) for i in session.get_inputs()],
        [(o.name, o.type, o.shape) for o in session.get_outputs()],
    )


def _run(path, feeds: dict) -> list:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_a_pipeline_with_a_categorical_column_gets_one_typed_input_per_feature(tmp_path):
    frame = _shop()
    model = _forest_pipeline(frame)
    path = tmp_path / "shop.onnx"

    exported = export_model(model, frame, path, name="shop")

    assert _signature(path) == (
        [
            ("color", "tensor(string)", [None, 1]),
            ("size", "tensor(float)", [None, 1]),
            ("weight", "tensor(float)", [None, 1]),
        ],
        [("label", "tensor(string)", [None]), ("probabilities", "tensor(float)", [None, 2])],
    )
    labels, probabilities = _run(
        path,
        {
            "color": frame[["color"]].to_numpy(dtype=object),
            "size": frame[["size"]].to_numpy(dtype=np.float32),
            "weight": frame[["weight"]].to_numpy(dtype=np.float32),
        },
    )
    assert list(labels) == list(model.predict(frame))
    assert np.abs(probabilities - model.predict_proba(frame)).max() <= 1e-5
    assert exported.parity.rows == 80 and exported.task == "classification"


def test_the_file_describes_itself(tmp_path):
    frame = _shop()
    path = tmp_path / "shop.onnx"

    exported = export_model(_forest_pipeline(frame), frame, path, name="shop", scores={"test": 0.9})

    props = _props(path)
    assert json.loads(props["features"]) == [
        {"name": "color", "type": "string", "categories": list(COLORS)},
        {"name": "size", "type": "number"},
        {"name": "weight", "type": "number"},
    ]
    assert json.loads(props["feature_names"]) == ["color", "size", "weight"]
    assert json.loads(props["classes"]) == json.loads(props["class_names"]) == ["no", "yes"]
    assert props["model_name"] == "shop"
    assert props["task"] == "classification"
    assert json.loads(props["scores"]) == {"test": 0.9}
    assert props["sklearn_version"] == sklearn.__version__
    assert EXAMPLE_KEY not in props  # the sample may be real data: only on request
    assert props["model_version"] == exported.version


def test_the_version_is_the_hash_of_the_file_before_the_version_was_added(tmp_path):
    frame = _shop()
    path = tmp_path / "shop.onnx"
    export_model(_forest_pipeline(frame), frame, path, name="shop")
    proto = onnx.load(str(path))
    version = _props(path)["model_version"]

    rest = {p.key: p.value for p in proto.metadata_props if p.key != "model_version"}
    onnx.helper.set_model_props(proto, rest)

    assert version == hashlib.sha256(proto.SerializeToString()).hexdigest()[:16]
    assert build(_forest_pipeline(frame), frame, name="shop").version == version


def test_an_example_row_only_when_asked(tmp_path):
    frame = _shop()

    export_model(
        _forest_pipeline(frame), frame, tmp_path / "shop.onnx", name="shop", example_row=True
    )

    first = frame.iloc[0]
    example = json.loads(_props(tmp_path / "shop.onnx")[EXAMPLE_KEY])
    assert example == {"color": first["color"], "size": first["size"], "weight": first["weight"]}


@pytest.mark.parametrize(
    "regressor",
    [
        GradientBoostingRegressor(n_estimators=20, random_state=0),
        HistGradientBoostingRegressor(max_iter=20),
    ],
    ids=lambda r: type(r).__name__,
)
def test_a_gradient_boosted_regressor_on_numbers_gets_one_float_matrix(tmp_path, regressor):
    frame = _shop()[["size", "weight"]]
    model = regressor.fit(frame, _price(_shop()))
    path = tmp_path / "price.onnx"

    exported = export_model(model, frame, path, name="price")

    assert _signature(path) == (
        [("input", "tensor(float)", [None, 2])],
        [("prediction", "tensor(float)", [None, 1])],
    )
    (predictions,) = _run(path, {"input": frame.to_numpy(dtype=np.float32)})
    expected = model.predict(frame)
    assert np.all(np.abs(predictions.ravel() - expected) <= 1e-4 * np.maximum(1, np.abs(expected)))
    props = _props(path)
    assert props["task"] == "regression"
    assert "classes" not in props and "class_names" not in props
    assert exported.parity.gap <= 1e-4


def test_histogram_boosting_with_an_encoded_categorical_column_exports(tmp_path):
    frame = _shop()
    frame.loc[::7, "weight"] = np.nan
    prepare = ColumnTransformer(
        [
            ("categorical", OrdinalEncoder(), ["color"]),
            ("numeric", SimpleImputer(), ["size", "weight"]),
        ]
    )
    model = Pipeline([("prepare", prepare), ("model", HistGradientBoostingRegressor(max_iter=20))])
    model.fit(frame, _price(frame.fillna(50.0)))

    export_model(model, frame, tmp_path / "price.onnx", name="price")

    inputs, outputs = _signature(tmp_path / "price.onnx")
    assert inputs == [
        ("color", "tensor(string)", [None, 1]),
        ("size", "tensor(float)", [None, 1]),
        ("weight", "tensor(float)", [None, 1]),
    ]
    assert outputs == [("prediction", "tensor(float)", [None, 1])]
    assert json.loads(_props(tmp_path / "price.onnx")["features"])[0]["categories"] == list(COLORS)


def test_a_linear_pipeline_keeps_double_precision(tmp_path):
    frame = _shop()[["size", "weight"]]
    model = Pipeline([("scale", StandardScaler()), ("model", LinearRegression())]).fit(
        frame, _price(_shop())
    )

    exported = export_model(model, frame, tmp_path / "price.onnx", name="price")

    assert _signature(tmp_path / "price.onnx") == (
        [("input", "tensor(double)", [None, 2])],
        [("prediction", "tensor(double)", [None, 1])],
    )
    assert exported.parity.gap <= 1e-12


def test_an_imputer_makes_the_graph_float(tmp_path):
    frame = _shop()[["size", "weight"]]
    frame.loc[::5, "size"] = np.nan
    model = Pipeline([("impute", SimpleImputer()), ("model", LogisticRegression())])
    model.fit(frame, _bought(_shop()))

    export_model(model, frame, tmp_path / "bought.onnx", name="bought")

    inputs, outputs = _signature(tmp_path / "bought.onnx")
    assert inputs == [("input", "tensor(float)", [None, 2])]
    assert outputs == [
        ("label", "tensor(string)", [None]),
        ("probabilities", "tensor(float)", [None, 2]),
    ]


def test_native_categorical_splits_are_refused_with_how_to_encode_instead(tmp_path):
    frame = _shop().astype({"color": "category"})
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features="from_dtype")
    model.fit(frame, _bought(frame))

    with pytest.raises(
        UnsupportedEstimator, match=r"\['color'\].*OrdinalEncoder.*ColumnTransformer"
    ) as refused:
        export_model(model, frame, tmp_path / "bought.onnx", name="bought")

    assert "categorical_features=None" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


class MedianRegressor(RegressorMixin, BaseEstimator):
    """A user's own estimator: scikit-learn runs it, skl2onnx knows nothing of it."""

    def fit(self, X, y):
        self.median_ = float(np.median(y))
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        return np.full(len(X), self.median_)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            FunctionTransformer(np.log1p),
            r"step 'transform' \(FunctionTransformer\): skl2onnx cannot convert it",
        ),
        (MedianRegressor(), r"step 'model' \(MedianRegressor\): skl2onnx has no converter for it"),
    ],
    ids=["function-transformer", "own-estimator"],
)
def test_a_step_skl2onnx_cannot_convert_is_named_and_nothing_is_written(tmp_path, step, expected):
    frame = _shop()[["size", "weight"]]
    steps = [("transform", step), ("model", LinearRegression())] if isinstance(step, FunctionTransformer) else [
        ("scale", StandardScaler()), ("model", step)
    ]  # fmt: skip
    model = Pipeline(steps).fit(frame, _price(_shop()))

    with pytest.raises(UnsupportedEstimator, match=expected) as refused:
        export_model(model, frame, tmp_path / "out.onnx", name="out")

    assert "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_float32_timestamps_that_lose_the_signal_fail_the_parity_check(tmp_path):
    # Unix times in seconds: float32 keeps only steps of 128 s at this size, so the scaled
    # feature the tree sees in onnxruntime is not the one scikit-learn computes in float64.
    seconds = 1_700_000_000.0 + np.arange(300.0)
    frame = pd.DataFrame({"timestamp": seconds})
    model = Pipeline(
        [("scale", StandardScaler()), ("model", DecisionTreeRegressor(random_state=0))]
    )
    model.fit(frame, seconds - seconds[0])

    with pytest.raises(
        ParityError, match=r"disagree on \d+ of 300 sample rows.*worst, row \d+ \{\"timestamp\""
    ) as refused:
        export_model(model, frame, tmp_path / "late.onnx", name="late")

    assert "scikit-learn" in str(refused.value) and "onnxruntime" in str(refused.value)
    assert "np.float64" not in str(refused.value)  # the numbers as a reader writes them
    assert list(tmp_path.iterdir()) == []


def test_a_classifier_that_answers_nan_fails_the_parity_check(tmp_path):
    # scikit-learn answers NaN too, so only a check that counts NaN as a gap refuses it.
    frame = _shop()[["size", "weight"]]
    model = LogisticRegression().fit(frame, _bought(_shop()))
    model.coef_[:] = np.nan

    with pytest.raises(ParityError, match=r"disagree on 80 of 80 sample rows.*nan"):
        export_model(model, frame, tmp_path / "nan.onnx", name="nan")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name", ["Iris", "", "-iris", "iris/v2", "iris v2", "a" * 64, "iris\n", "../iris"]
)
def test_names_that_cannot_be_a_path_or_url_part_are_refused(tmp_path, name):
    frame = _shop()

    with pytest.raises(ExportError, match="name: expected 1 to 63 characters"):
        export_model(_forest_pipeline(frame), frame, tmp_path / "x.onnx", name=name)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["iris", "churn-v2.1", "a" * 63, "0_model"])
def test_names_of_lower_case_letters_digits_dots_dashes_and_underscores_are_accepted(
    tmp_path, name
):
    frame = _shop()

    export_model(_forest_pipeline(frame), frame, tmp_path / "x.onnx", name=name)

    assert _props(tmp_path / "x.onnx")["model_name"] == name


def test_a_sample_without_the_fitted_columns_is_refused_naming_both(tmp_path):
    frame = _shop()

    with pytest.raises(
        ExportError,
        match=r"expected the columns .*\['color', 'size', 'weight'\], got \['color', 'size'\]",
    ):
        export_model(
            _forest_pipeline(frame), frame[["color", "size"]], tmp_path / "x.onnx", name="shop"
        )


def test_a_numpy_sample_needs_its_feature_names(tmp_path):
    rows = _shop()[["size", "weight"]].to_numpy()
    model = LinearRegression().fit(rows, _price(_shop()))

    with pytest.raises(ExportError, match="feature_names: a NumPy sample needs its 2 column names"):
        export_model(model, rows, tmp_path / "x.onnx", name="price")
    export_model(model, rows, tmp_path / "x.onnx", name="price", feature_names=["size", "weight"])

    assert json.loads(_props(tmp_path / "x.onnx")["feature_names"]) == ["size", "weight"]


def test_a_clusterer_is_refused(tmp_path):
    from sklearn.cluster import KMeans

    frame = _shop()[["size", "weight"]]

    with pytest.raises(UnsupportedEstimator, match="expected a fitted classifier or regressor"):
        export_model(
            KMeans(n_clusters=2, n_init=1).fit(frame), frame, tmp_path / "x.onnx", name="k"
        )


# The command line, with the estimator in the files users bring.


def _csv(frame: pd.DataFrame, path):
    frame.to_csv(path, index=False)
    return path


def test_cli_exports_a_joblib_file_with_a_csv_sample(tmp_path, capsys):
    frame = _shop()
    joblib.dump(_forest_pipeline(frame), tmp_path / "shop.joblib")
    out = tmp_path / "out" / "shop.onnx"

    code = main(
        ["--estimator", str(tmp_path / "shop.joblib"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
         "--out", str(out), "--name", "shop"]
    )  # fmt: skip

    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.out.startswith(f"wrote {out} (")
    assert "color (string), size (number), weight (number)" in printed.out
    assert "on 80 rows" in printed.out
    assert EXAMPLE_KEY not in _props(out)
    # The next step, ready to paste: `make run` serves the file and prints a request for it.
    assert printed.out.splitlines()[-1] == f"serve it: make run MODEL_URI={out}"


def test_cli_exports_a_skops_file_with_the_example_row(tmp_path, capsys):
    frame = _shop()
    skops.io.dump(_forest_pipeline(frame), tmp_path / "shop.skops")
    out = tmp_path / "shop.onnx"

    code = main(
        ["--estimator", str(tmp_path / "shop.skops"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
         "--out", str(out), "--name", "shop", "--example-row"]
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    first = frame.iloc[0]
    assert json.loads(_props(out)[EXAMPLE_KEY]) == {
        "color": first["color"], "size": first["size"], "weight": first["weight"],
    }  # fmt: skip


def test_cli_keeps_codes_that_look_like_numbers_as_the_strings_the_encoder_learned(
    tmp_path, capsys
):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"zip": rng.choice(["01234", "02000", "10001"], 60), "size": rng.normal(size=60)}
    )
    prepare = ColumnTransformer(
        [
            ("zip", OneHotEncoder(handle_unknown="ignore"), ["zip"]),
            ("size", "passthrough", ["size"]),
        ]
    )
    model = Pipeline(
        [("prepare", prepare), ("model", RandomForestClassifier(n_estimators=5, random_state=0))]
    )
    joblib.dump(model.fit(frame, frame["zip"] == "01234"), tmp_path / "zip.joblib")
    out = tmp_path / "zip.onnx"

    code = main(
        ["--estimator", str(tmp_path / "zip.joblib"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
         "--out", str(out), "--name", "zip", "--example-row"]
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    props = _props(out)
    assert json.loads(props["features"])[0] == {
        "name": "zip",
        "type": "string",
        "categories": ["01234", "02000", "10001"],
    }
    assert json.loads(props[EXAMPLE_KEY])["zip"] == frame["zip"][0]
    assert _signature(out)[0][0] == ("zip", "tensor(string)", [None, 1])


def test_cli_warns_when_the_estimator_was_fitted_with_another_scikit_learn(tmp_path, capsys):
    frame = _shop()
    data = pickle.dumps(_forest_pipeline(frame))
    older = "0.0.1".ljust(len(sklearn.__version__), "0")  # same length: the pickle stays valid
    (tmp_path / "shop.pkl").write_bytes(data.replace(sklearn.__version__.encode(), older.encode()))

    code = main(
        ["--estimator", str(tmp_path / "shop.pkl"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
         "--out", str(tmp_path / "shop.onnx"), "--name", "shop"]
    )  # fmt: skip

    printed = capsys.readouterr()
    assert code == 0, printed.err
    warnings = [line for line in printed.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"warning: {tmp_path / 'shop.pkl'} was fitted with scikit-learn {older} ("
    )
    assert "Pipeline" in warnings[0] and "RandomForestClassifier" in warnings[0]
    assert f"loaded here with {sklearn.__version__}" in warnings[0]


def test_a_file_another_scikit_learn_wrote_and_this_one_cannot_load_names_both_versions(tmp_path, capsys):
    # What a ColumnTransformer pickled by scikit-learn 1.5 does under 1.9: a class that moved.
    frame = _shop()
    data = pickle.dumps(_forest_pipeline(frame))
    older = "0.0.1".ljust(len(sklearn.__version__), "0")
    broken = data.replace(sklearn.__version__.encode(), older.encode()).replace(b"Pipeline", b"Pipelinx")
    (tmp_path / "shop.pkl").write_bytes(broken)
    (tmp_path / "same.pkl").write_bytes(data.replace(b"Pipeline", b"Pipelinx"))
    sample = str(_csv(frame, tmp_path / "rows.csv"))

    other = main(["--estimator", str(tmp_path / "shop.pkl"), "--sample", sample, "--out", str(tmp_path / "a.onnx"), "--name", "shop"])
    other_err = capsys.readouterr().err
    same = main(["--estimator", str(tmp_path / "same.pkl"), "--sample", sample, "--out", str(tmp_path / "b.onnx"), "--name", "shop"])
    same_err = capsys.readouterr().err

    assert other == same == 1
    assert other_err.startswith(
        f"error: estimator {tmp_path / 'shop.pkl'}: fitted with scikit-learn {older}, which scikit-learn "
        f"{sklearn.__version__} here cannot load (AttributeError: "
    )
    assert other_err.rstrip().endswith(f"refit with scikit-learn=={sklearn.__version__} (requirements-train.txt)")
    assert same_err.startswith(f"error: estimator {tmp_path / 'same.pkl'}: expected a joblib or pickle file (AttributeError: ")
    assert not (tmp_path / "a.onnx").exists()


def test_cli_refuses_skops_types_outside_scikit_learn_unless_trusted(tmp_path, capsys):
    frame = _shop()[["size", "weight"]]
    model = Pipeline([("scale", StandardScaler()), ("model", LinearRegression())]).fit(
        frame, _price(_shop())
    )
    model.named_steps["scale"].note_ = fractions.Fraction(1, 2)  # a type skops does not trust
    skops.io.dump(model, tmp_path / "price.skops")
    out = tmp_path / "price.onnx"
    args = ["--estimator", str(tmp_path / "price.skops"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
            "--out", str(out), "--name", "price"]  # fmt: skip

    refused = main(args)
    err = capsys.readouterr().err
    written_before_trust = out.exists()
    trusted = main([*args, "--trust", "fractions.Fraction"])

    assert refused == 1
    assert "skops refuses to load types outside scikit-learn: ['fractions.Fraction']" in err
    assert "--trust" in err
    assert not written_before_trust
    assert trusted == 0 and out.exists()


def test_cli_refuses_a_bad_name_before_reading_anything(tmp_path, capsys):
    code = main(
        [
            "--estimator",
            str(tmp_path / "absent.joblib"),
            "--sample",
            "x.csv",
            "--out",
            "x.onnx",
            "--name",
            "My Model",
        ]
    )

    assert code == 1
    assert "error: name: expected 1 to 63 characters" in capsys.readouterr().err


def test_cli_refuses_a_missing_estimator_file(tmp_path, capsys):
    code = main(
        [
            "--estimator",
            str(tmp_path / "absent.joblib"),
            "--sample",
            "x.csv",
            "--out",
            "x.onnx",
            "--name",
            "x",
        ]
    )

    assert code == 1
    assert "absent.joblib': no such file" in capsys.readouterr().err


def test_cli_refuses_a_file_that_is_not_an_estimator_file(tmp_path, capsys):
    (tmp_path / "notes.joblib").write_text("hello")

    code = main(
        [
            "--estimator",
            str(tmp_path / "notes.joblib"),
            "--sample",
            "x.csv",
            "--out",
            "x.onnx",
            "--name",
            "x",
        ]
    )

    assert code == 1
    assert "expected a joblib or pickle file" in capsys.readouterr().err


def test_the_command_runs_as_documented(tmp_path):
    frame = _shop()
    joblib.dump(_forest_pipeline(frame), tmp_path / "shop.joblib")
    out = tmp_path / "shop.onnx"

    result = subprocess.run(
        [sys.executable, "-m", "training.export", "--estimator", str(tmp_path / "shop.joblib"),
         "--sample", str(_csv(frame, tmp_path / "rows.csv")), "--out", str(out), "--name", "shop"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert _props(out)["model_name"] == "shop"


def test_missing_categories_in_the_sample_are_refused_with_what_to_do(tmp_path):
    frame = _shop()
    model = _forest_pipeline(frame)
    frame.loc[3, "color"] = None

    with pytest.raises(ExportError, match=r"sample column 'color': .* got 1 missing; fill them"):
        export_model(model, frame, tmp_path / "x.onnx", name="shop")


def test_rows_scikit_learn_itself_refuses_are_an_export_error(tmp_path):
    frame = _shop()[["size", "weight"]]
    model = LinearRegression().fit(frame, _price(_shop()))
    frame.loc[2, "size"] = np.nan

    with pytest.raises(
        ExportError, match=r"sample: scikit-learn cannot predict its rows \(ValueError: .*NaN"
    ):
        export_model(model, frame, tmp_path / "x.onnx", name="price")

    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_sample_with_the_target_column_still_in_it(tmp_path, capsys):
    frame = _shop()
    joblib.dump(_forest_pipeline(frame), tmp_path / "shop.joblib")
    with_target = frame.assign(bought=_bought(frame))

    code = main(
        ["--estimator", str(tmp_path / "shop.joblib"), "--sample", str(_csv(with_target, tmp_path / "rows.csv")),
         "--out", str(tmp_path / "shop.onnx"), "--name", "shop"]
    )  # fmt: skip

    assert code == 1
    assert "got ['color', 'size', 'weight', 'bought']" in capsys.readouterr().err
    assert not (tmp_path / "shop.onnx").exists()


def test_cli_says_when_the_output_cannot_be_written(tmp_path, capsys):
    frame = _shop()
    joblib.dump(_forest_pipeline(frame), tmp_path / "shop.joblib")
    (tmp_path / "taken").mkdir()

    code = main(
        ["--estimator", str(tmp_path / "shop.joblib"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
         "--out", str(tmp_path / "taken"), "--name", "shop"]
    )  # fmt: skip

    assert code == 1
    assert f"error: cannot write {tmp_path / 'taken'}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv", "shop.joblib", "taken"]


def test_inputs_keep_feature_names_that_are_not_identifiers(tmp_path):
    frame = _shop().rename(columns={"size": "size (cm)", "color": "colour/kind"})
    prepare = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(), ["colour/kind"]),
            ("numeric", StandardScaler(), ["size (cm)", "weight"]),
        ]
    )
    model = Pipeline(
        [("prepare", prepare), ("model", RandomForestClassifier(n_estimators=5, random_state=0))]
    )
    model.fit(frame, _bought(_shop()))

    export_model(model, frame, tmp_path / "shop.onnx", name="shop")

    inputs, _ = _signature(tmp_path / "shop.onnx")
    assert [name for name, _, _ in inputs] == ["colour/kind", "size (cm)", "weight"]
    onnx.checker.check_model(onnx.load(str(tmp_path / "shop.onnx")), full_check=True)


def test_a_feature_named_like_an_output_is_refused(tmp_path):
    frame = _shop().rename(columns={"size": "probabilities"})
    prepare = ColumnTransformer(
        [("categorical", OneHotEncoder(), ["color"])], remainder="passthrough"
    )
    model = Pipeline(
        [("prepare", prepare), ("model", RandomForestClassifier(n_estimators=5, random_state=0))]
    )
    model.fit(frame, _bought(_shop()))

    with pytest.raises(
        ExportError, match="feature 'probabilities': the graph already has a tensor of that name"
    ):
        export_model(model, frame, tmp_path / "shop.onnx", name="shop")

    assert list(tmp_path.iterdir()) == []


def test_numeric_columns_selected_by_name_get_one_input_each(tmp_path):
    frame = _shop()[["size", "weight"]]
    prepare = ColumnTransformer([("scaled", StandardScaler(), ["weight"])], remainder="passthrough")
    model = Pipeline(
        [
            ("prepare", prepare),
            ("model", GradientBoostingRegressor(n_estimators=10, random_state=0)),
        ]
    )
    model.fit(frame, _price(_shop()))

    export_model(model, frame, tmp_path / "price.onnx", name="price")

    assert _signature(tmp_path / "price.onnx") == (
        [("size", "tensor(float)", [None, 1]), ("weight", "tensor(float)", [None, 1])],
        [("prediction", "tensor(float)", [None, 1])],
    )


def test_cli_warns_about_another_scikit_learn_in_a_skops_file_too(tmp_path, capsys):
    frame = _shop()
    fitted = io.BytesIO(skops.io.dumps(_forest_pipeline(frame)))
    older = "0.0.1".ljust(len(sklearn.__version__), "0")
    with zipfile.ZipFile(fitted) as source, zipfile.ZipFile(tmp_path / "shop.skops", "w") as copy:
        for entry in source.infolist():
            content = source.read(entry.filename)
            if entry.filename == "schema.json":
                content = content.replace(sklearn.__version__.encode(), older.encode())
            copy.writestr(entry, content)

    code = main(
        ["--estimator", str(tmp_path / "shop.skops"), "--sample", str(_csv(frame, tmp_path / "rows.csv")),
         "--out", str(tmp_path / "shop.onnx"), "--name", "shop"]
    )  # fmt: skip

    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"fitted with scikit-learn {older} (" in printed.err
    assert f"loaded here with {sklearn.__version__}" in printed.err


def test_a_whole_number_column_one_hot_encoded_keeps_its_codes_as_categories(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"zone": rng.choice([3, 1, 2], 90), "area": rng.normal(80.0, 20.0, 90)})
    prepare = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="error"), ["zone"]), ("numeric", StandardScaler(), ["area"])]
    )
    model = Pipeline([("prepare", prepare), ("model", RandomForestClassifier(n_estimators=5, random_state=0))])
    model.fit(frame, np.where(frame["zone"] == 3, "yes", "no"))

    exported = export_model(model, frame, tmp_path / "zones.onnx", name="zones")

    assert json.loads(_props(tmp_path / "zones.onnx")["features"]) == [
        {"name": "zone", "type": "number", "categories": [1, 2, 3]},
        {"name": "area", "type": "number"},
    ]
    assert [f.categories for f in exported.features] == [(1, 2, 3), None]


def test_a_file_the_service_would_refuse_is_not_written(tmp_path):
    # scikit-learn and onnxruntime take a column named "instances"; the service reads that key
    # as a batch of rows, and refuses such a model when it loads.
    frame = pd.DataFrame({"instances": np.arange(40.0), "size": np.arange(40.0) % 7})
    model = LinearRegression().fit(frame, frame["instances"] * 2 + frame["size"])

    with pytest.raises(ExportError, match=r"^the service cannot load the converted file: expected feature names other than 'instances'.*; nothing written$"):
        export_model(model, frame, tmp_path / "odd.onnx", name="odd")

    assert list(tmp_path.iterdir()) == []
