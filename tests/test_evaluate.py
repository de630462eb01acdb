"""The quality gate: real models, scored through the service's own loader and checks."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from function.model import model_from_bytes
from tests.job_entrypoints import three_feature_iris, weak_iris
from tests.own_models import bought, price, shop_rows
from training.evaluate import (
    ACCURACY,
    LOG_LOSS,
    PASSED,
    R2,
    REFUSED,
    RMSE,
    EvaluationError,
    Gate,
    evaluate,
    feature_differences,
)
from training.export import build
from training.train import CLASS_NAMES, iris

ALL_IRIS = np.repeat(np.asarray(CLASS_NAMES, dtype=object), 50)


def served(estimator, sample, name="iris"):
    return model_from_bytes(build(estimator, sample, name=name).data, f"{name}.onnx")


@pytest.fixture(scope="module")
def seed():
    estimator, sample, *_ = iris()
    return estimator, sample, served(estimator, sample)


@pytest.fixture(scope="module")
def weak():
    estimator, sample, *_ = weak_iris()
    return estimator, sample, served(estimator, sample)


@pytest.fixture(scope="module")
def rows_against_weak(seed, weak):
    """Iris rows both models answer right, and rows only the seed's model does."""
    seed_right = seed[0].predict(seed[1]) == ALL_IRIS
    weak_right = weak[0].predict(weak[1]) == ALL_IRIS
    both = np.flatnonzero(seed_right & weak_right)
    only_seed = np.flatnonzero(seed_right & ~weak_right)
    return both, only_seed


def holdout(seed, rows):
    sample = seed[1]
    return sample.iloc[rows].reset_index(drop=True), ALL_IRIS[rows]


@pytest.mark.parametrize(
    ("right", "against", "max_regression", "verdict"),
    [
        (14, 1, None, PASSED),  # one row of 15 never decides by default
        (13, 2, None, REFUSED),
        (14, 1, 0.0, REFUSED),  # MAX_REGRESSION=0: any loss refuses
        (13, 2, 0.2, PASSED),  # 2/15 = 0.133 is within 0.2
        (98, 1, None, PASSED),
        (97, 2, None, REFUSED),  # without the worst row, 1/98 = 0.0102 is over one point
    ],
)  # fmt: skip
def test_one_row_against_the_candidate_does_not_decide_it(
    seed, weak, rows_against_weak, right, against, max_regression, verdict
):
    both, only_seed = rows_against_weak
    X, y = holdout(seed, np.r_[both[:right], only_seed[:against]])

    evaluation = evaluate(weak[2], seed[2], X, y, Gate(max_regression=max_regression))

    assert evaluation.verdict == verdict, evaluation.reasons
    n = right + against
    assert evaluation.gate["regression"] == pytest.approx(against / n)
    if verdict == REFUSED:
        (reason,) = evaluation.reasons
        assert f"is worse than production's 1 by {against / n:.4g}" in reason


def test_a_refusal_by_default_says_both_figures_and_the_allowance(seed, weak, rows_against_weak):
    both, only_seed = rows_against_weak
    X, y = holdout(seed, np.r_[both[:13], only_seed[:2]])

    (reason,) = evaluate(weak[2], seed[2], X, y, Gate()).reasons

    assert reason == (
        "the candidate's accuracy 0.8667 is worse than production's 1 by 0.1333, and still by "
        "0.07143 without the held-out row that counts most against it: more than the allowance "
        "0.01 (set MAX_REGRESSION to choose another)"
    )


def test_figures_are_the_service_answers_and_match_scikit_learn(seed):
    estimator, sample, model = seed
    X, y = sample, ALL_IRIS

    evaluation = evaluate(model, model, X, y, Gate(metric=LOG_LOSS))

    metrics = evaluation.candidate["metrics"]
    assert metrics[ACCURACY] == accuracy_score(y, estimator.predict(X))
    assert metrics[LOG_LOSS] == pytest.approx(log_loss(y, estimator.predict_proba(X)), rel=1e-9)
    assert evaluation.production["metrics"] == metrics
    assert evaluation.verdict == PASSED


def test_a_regressor_is_judged_by_r2_or_rmse(price_regressor):
    model = model_from_bytes(price_regressor.path.read_bytes(), "price.onnx")
    X = shop_rows(60, seed=9)
    y = price(X)
    predicted = price_regressor.estimator.predict(X)

    default = evaluate(model, None, X, y, Gate())
    by_rmse = evaluate(model, None, X, y, Gate(metric=RMSE, min_score=0.1))

    assert default.metric == R2
    assert default.candidate["metrics"][R2] == pytest.approx(r2_score(y, predicted), rel=1e-5)
    assert default.candidate["metrics"][RMSE] == pytest.approx(
        math.sqrt(mean_squared_error(y, predicted)), rel=1e-4
    )
    assert by_rmse.verdict == REFUSED
    assert by_rmse.reasons[0].startswith("the candidate's rmse ")
    assert by_rmse.reasons[0].endswith(" is above MIN_SCORE 0.1")


def test_a_metric_of_the_other_task_is_refused_naming_metric(seed):
    _, sample, model = seed
    with pytest.raises(
        ValueError,
        match=r"^METRIC: expected one of \['accuracy', 'log_loss'\] for a classification model, got 'r2'$",
    ):
        evaluate(model, None, sample, ALL_IRIS, Gate(metric=R2))


def test_differences_of_features_task_and_classes_are_named(seed, price_regressor):
    estimator, sample, *_ = three_feature_iris()
    fewer = served(estimator, sample)
    regressor = model_from_bytes(price_regressor.path.read_bytes(), "price.onnx")

    assert feature_differences(fewer, seed[2]) == [
        "features only production takes: ['petal_width']"
    ]
    assert feature_differences(seed[2], regressor) == [
        "production is a regression model, the candidate a classification model",
        "features only production takes: ['color', 'size', 'weight']",
        "features only the candidate takes: ['sepal_length', 'sepal_width', 'petal_length', 'petal_width']",
    ]


def test_a_production_model_of_other_features_is_a_refusal_not_a_crash(seed):
    estimator, sample, holdout_X, holdout_y = three_feature_iris()

    evaluation = evaluate(served(estimator, sample), seed[2], holdout_X, holdout_y, Gate())

    assert evaluation.verdict == REFUSED
    assert "features only production takes: ['petal_width']" in evaluation.reasons[0]


def shop(frame: pd.DataFrame) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="error"), ["color"]),
            ("numeric", StandardScaler(), ["size", "weight"]),
        ]
    )
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    return Pipeline([("prepare", prepare), ("model", model)]).fit(frame, bought(frame))


def test_rows_production_would_refuse_are_left_out_of_the_comparison():
    old_rows = shop_rows(120, seed=0)
    new_rows = pd.concat(
        [old_rows, shop_rows(30, seed=1).assign(color="purple")], ignore_index=True
    )
    production = served(shop(old_rows), old_rows, "shop")
    candidate = served(shop(new_rows), new_rows, "shop")
    X = pd.concat(
        [shop_rows(20, seed=2), shop_rows(5, seed=3).assign(color="purple")], ignore_index=True
    )

    evaluation = evaluate(candidate, production, X, bought(X), Gate())

    assert evaluation.production["compared_rows"] == 20
    assert evaluation.production["refused_rows"] == 5
    assert evaluation.holdout_rows == 25


def test_held_out_rows_the_candidate_would_refuse_fail_the_evaluation(shop_classifier):
    candidate = model_from_bytes(shop_classifier.path.read_bytes(), "shop.onnx")
    X = shop_rows(10, seed=4)
    X.loc[3, "color"] = "purple"

    with pytest.raises(
        EvaluationError, match=r"would refuse 1 of its 10 held-out rows \(first: row 3"
    ):
        evaluate(candidate, None, X, bought(X), Gate())


def test_held_out_labels_of_another_length_are_refused(seed):
    with pytest.raises(
        EvaluationError,
        match=r"holdout_y: expected one label or target per held-out row \(150\), got 3",
    ):
        evaluate(seed[2], None, seed[1], ALL_IRIS[:3], Gate())


def test_the_evaluation_document_is_the_same_bytes_every_time(seed, weak):
    _, sample, model = seed

    first = evaluate(weak[2], model, sample, ALL_IRIS, Gate()).document()
    again = evaluate(weak[2], model, sample, ALL_IRIS, Gate()).document()

    assert first == again
    document = json.loads(first)
    assert list(document) == sorted(document)
    assert document["candidate"]["version"] == weak[2].version
    assert document["production"]["version"] == model.version
