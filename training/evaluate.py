"""The quality gate: the candidate and the production model, scored as the service answers them
on the same held-out rows.

Both ONNX files are loaded by the service's own loader (`function.model.model_from_bytes`), each
held-out row is checked by the service's own request checks (`Feature.accept`) and answered by
`Model.predict`, so every figure here is what the endpoint would have answered.

The metric fits the task: accuracy (default) or log loss for a classifier, R² (default) or RMSE for
a regressor; `METRIC` names one. The candidate is refused when
- it is worse than `MIN_SCORE` (for accuracy and R², below it; for log loss and RMSE, where lower
  is better, above it), or
- it is worse than production, on the rows both answer, by more than `MAX_REGRESSION`. Left unset,
  the allowance is `DEFAULT_ALLOWANCE` (one point of accuracy or R², one percent of production's
  log loss or RMSE) after leaving out the one held-out row that counts most against the candidate:
  on a small held-out set one row moves accuracy by 1/n (15 iris rows: 6.7 points), so no single
  row decides; two rows against it do.
A production model taking other features (or of another task, or other classes) cannot be
compared on the same rows: that is a refusal naming the differences.
"""

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from function.errors import ServiceError
from function.model import Model
from function.signature import CLASSIFICATION, REGRESSION, Batch

ACCURACY = "accuracy"
LOG_LOSS = "log_loss"
R2 = "r2"
RMSE = "rmse"
METRICS = {CLASSIFICATION: (ACCURACY, LOG_LOSS), REGRESSION: (R2, RMSE)}
ALL_METRICS = (ACCURACY, LOG_LOSS, R2, RMSE)
DEFAULT_METRIC = {CLASSIFICATION: ACCURACY, REGRESSION: R2}
HIGHER_IS_BETTER = {ACCURACY: True, R2: True, LOG_LOSS: False, RMSE: False}
# With MAX_REGRESSION unset: absolute for the bounded metrics, relative to production's figure for
# the others (a log loss or an RMSE has the scale of the data).
DEFAULT_ALLOWANCE = 0.01
RELATIVE_ALLOWANCE = {ACCURACY: False, R2: False, LOG_LOSS: True, RMSE: True}
# A probability of 0 for the true class would make the log loss infinite.
PROBABILITY_FLOOR = 1e-15
# Rows per run of the model, as the service's largest batch.
BATCH_ROWS = 1000
# Figures are compared after float arithmetic: 0.9 - 0.8 is not exactly 0.1.
_SLACK = 1e-12

PASSED = "passed"
REFUSED = "refused"


class EvaluationError(Exception):
    """The held-out rows cannot be scored: the entry point's data, or a model that fails on it."""


@dataclass(frozen=True)
class Gate:
    """The gate's settings: `metric` None picks the task's default; `max_regression` None the
    allowance described above."""

    metric: str | None = None
    min_score: float | None = None
    max_regression: float | None = None

    def metric_for(self, task: str) -> str:
        metric = self.metric or DEFAULT_METRIC[task]
        if metric not in METRICS[task]:
            raise ValueError(
                f"METRIC: expected one of {list(METRICS[task])} for a {task} model, got {metric!r}"
            )
        return metric


@dataclass(frozen=True)
class Scored:
    """One model's answers to the held-out rows: per-row losses for every metric of its task."""

    answered: np.ndarray  # bool per row: the service would answer it (its values pass the checks)
    wrong: np.ndarray | None = None  # classifier: 1.0 where the label is not the true one
    log_loss: np.ndarray | None = None  # classifier: -log p(true class)
    squared: np.ndarray | None = None  # regressor: squared error
    targets: np.ndarray | None = None  # regressor: the true values

    def metrics(self, rows: np.ndarray) -> dict[str, float | None]:
        """Every metric of the task over the rows where `rows` is True."""
        if self.wrong is not None:
            return {
                ACCURACY: float(1.0 - self.wrong[rows].mean()),
                LOG_LOSS: float(self.log_loss[rows].mean()),
            }
        squared, targets = self.squared[rows], self.targets[rows]
        total = float(((targets - targets.mean()) ** 2).sum())
        return {
            # R² is undefined when every target is the same.
            R2: float(1.0 - squared.sum() / total) if total > 0 else None,
            RMSE: float(math.sqrt(squared.mean())),
        }

    def losses(self, metric: str) -> np.ndarray:
        """Per row, what counts against the model in `metric` (higher is worse)."""
        if metric == ACCURACY:
            return self.wrong
        if metric == LOG_LOSS:
            return self.log_loss
        return self.squared


@dataclass(frozen=True)
class Evaluation:
    verdict: str  # PASSED or REFUSED
    reasons: tuple[str, ...]
    metric: str
    holdout_rows: int
    candidate: dict[str, Any]
    production: dict[str, Any] | None
    gate: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "metric": self.metric,
            "holdout_rows": self.holdout_rows,
            "candidate": self.candidate,
            "production": self.production,
            "gate": self.gate,
        }

    def document(self) -> bytes:
        """evaluation.json: the same bytes for the same models and rows (sorted keys, no clock)."""
        return (
            json.dumps(self.as_json(), sort_keys=True, indent=2, allow_nan=False) + "\n"
        ).encode()


def feature_differences(candidate: Model, production: Model) -> list[str]:
    """How the production model's signature differs from the candidate's, in words; [] if alike."""
    differences = []
    cand, prod = candidate.signature, production.signature
    if cand.task != prod.task:
        differences.append(f"production is a {prod.task} model, the candidate a {cand.task} model")
    cand_types = {f.name: f.type for f in cand.features}
    prod_types = {f.name: f.type for f in prod.features}
    only_prod = [name for name in prod_types if name not in cand_types]
    only_cand = [name for name in cand_types if name not in prod_types]
    if only_prod:
        differences.append(f"features only production takes: {only_prod}")
    if only_cand:
        differences.append(f"features only the candidate takes: {only_cand}")
    for name, kind in cand_types.items():
        if name in prod_types and prod_types[name] != kind:
            differences.append(
                f"feature {name!r} is a {prod_types[name]} in production, a {kind} in the candidate"
            )
    if cand.task == prod.task == CLASSIFICATION and set(cand.classes) != set(prod.classes):
        differences.append(
            f"classes: production {list(prod.classes)}, the candidate {list(cand.classes)}"
        )
    return differences


def score(model: Model, holdout_X: Any, holdout_y: Any, who: str) -> Scored:
    """`model`'s answers to every held-out row the service would answer; the rows it would refuse
    (a category it never learned) are marked unanswered. EvaluationError if the model fails."""
    from training.export import ExportError, sample_frame

    try:
        frame = sample_frame(holdout_X)
    except ExportError as error:
        raise EvaluationError(f"holdout_X: {str(error).removeprefix('sample: ')}") from error
    targets = np.asarray(holdout_y, dtype=object).reshape(-1)
    if len(targets) != len(frame):
        raise EvaluationError(
            f"holdout_y: expected one label or target per held-out row ({len(frame)}), "
            f"got {len(targets)}"
        )
    features = model.signature.features
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise EvaluationError(
            f"holdout_X: expected the {who}'s features {[f.name for f in features]}, "
            f"got columns {list(frame.columns)} (missing {missing})"
        )
    columns = [frame[f.name].tolist() for f in features]
    rows, answered = [], np.zeros(len(frame), dtype=bool)
    for index in range(len(frame)):
        try:
            rows.append([f.accept(column[index], "") for f, column in zip(features, columns)])
        except ServiceError:
            continue
        answered[index] = True
    labels, probabilities, values = [], [], []
    for start in range(0, len(rows), BATCH_ROWS):
        chunk = rows[start : start + BATCH_ROWS]
        try:
            prediction = model.predict(Batch(chunk, row_label="held-out row {}"))
        except ServiceError as error:
            raise EvaluationError(f"the {who} model cannot answer the held-out rows: {error}")
        if prediction.values is None:
            labels.extend(prediction.labels)
            probabilities.extend(prediction.probabilities)
        else:
            values.extend(prediction.values)
    n = len(frame)
    if model.signature.task == CLASSIFICATION:
        truth = [str(label) for label in targets]
        wrong = np.ones(n)
        loss = np.full(n, -math.log(PROBABILITY_FLOOR))
        index = {name: position for position, name in enumerate(model.signature.classes)}
        where = np.flatnonzero(answered)
        for row, label, probs in zip(where, labels, probabilities):
            wrong[row] = float(label != truth[row])
            position = index.get(truth[row])
            p = probs[position] if position is not None else 0.0
            loss[row] = -math.log(min(max(p, PROBABILITY_FLOOR), 1.0))
        return Scored(answered=answered, wrong=wrong, log_loss=loss)
    try:
        truth = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise EvaluationError(
            f"holdout_y: expected numbers for a regressor, got {targets[:3].tolist()}..."
        ) from error
    if not np.isfinite(truth).all():
        raise EvaluationError("holdout_y: expected finite numbers, got NaN or infinity")
    squared = np.zeros(n)
    squared[answered] = (np.asarray(values, dtype=np.float64) - truth[answered]) ** 2
    return Scored(answered=answered, squared=squared, targets=truth)


def evaluate(
    candidate: Model,
    production: Model | None,
    holdout_X: Any,
    holdout_y: Any,
    gate: Gate,
) -> Evaluation:
    """The gate's verdict on `candidate`; `production` None for a first model.

    EvaluationError when the rows cannot be scored; ValueError (naming METRIC) for a metric that
    does not fit the task.
    """
    task = candidate.signature.task
    metric = gate.metric_for(task)
    higher = HIGHER_IS_BETTER[metric]
    mine = score(candidate, holdout_X, holdout_y, "candidate")
    n = len(mine.answered)
    if n == 0:
        raise EvaluationError("holdout_X: expected at least one held-out row, got none")
    refused_rows = np.flatnonzero(~mine.answered)
    if refused_rows.size:
        raise EvaluationError(
            f"the candidate's service would refuse {refused_rows.size} of its {n} held-out rows "
            f"(first: row {int(refused_rows[0])}, a value outside what it takes, such as a "
            f"category it never learned or a missing number); "
            "hold out only rows a request could carry"
        )
    everything = np.ones(n, dtype=bool)
    candidate_metrics = mine.metrics(everything)
    figure = candidate_metrics[metric]
    if figure is None:
        raise EvaluationError(
            f"{metric}: undefined on these held-out rows (every target is the same); "
            f"set METRIC={RMSE}"
        )
    candidate_json = {
        "name": candidate.name,
        "version": candidate.version,
        "metrics": candidate_metrics,
    }
    gate_json = {
        "metric": metric,
        "higher_is_better": higher,
        "min_score": gate.min_score,
        "max_regression": gate.max_regression,
    }
    refusals: list[str] = []
    if gate.min_score is not None and _worse(figure, gate.min_score, higher) > _SLACK:
        side = "below" if higher else "above"
        refusals.append(
            f"the candidate's {metric} {_fmt(figure)} is {side} MIN_SCORE {_fmt(gate.min_score)}"
        )
    if production is None:
        return Evaluation(
            verdict=REFUSED if refusals else PASSED,
            reasons=tuple(refusals or ["first model: no production model to compare with"]),
            metric=metric,
            holdout_rows=n,
            candidate=candidate_json,
            production=None,
            gate=gate_json,
        )

    production_json: dict[str, Any] = {
        "uri": production.uri,
        "name": production.name,
        "version": production.version,
    }
    differences = feature_differences(candidate, production)
    if differences:
        refusals.append(
            f"the production model {production.uri} cannot be compared with the candidate on the "
            f"same rows: {'; '.join(differences)}. A model of other features is a new model: "
            "run the job with MODEL_URI unset to publish it as a first model"
        )
        return Evaluation(
            verdict=REFUSED,
            reasons=tuple(refusals),
            metric=metric,
            holdout_rows=n,
            candidate=candidate_json,
            production=production_json,
            gate=gate_json,
        )
    theirs = score(production, holdout_X, holdout_y, "production")
    common = theirs.answered  # the candidate answers every row
    compared = int(common.sum())
    if compared == 0:
        refusals.append(
            f"the production model {production.uri} would refuse every held-out row "
            "(categories it never learned): nothing to compare on"
        )
        return Evaluation(
            verdict=REFUSED, reasons=tuple(refusals), metric=metric, holdout_rows=n,
            candidate=candidate_json, production=production_json, gate=gate_json,
        )  # fmt: skip
    mine_common = mine.metrics(common)[metric]
    theirs_common = theirs.metrics(common)[metric]
    if mine_common is None or theirs_common is None:
        raise EvaluationError(
            f"{metric}: undefined on the rows both models answer (every target is the same); "
            f"set METRIC={RMSE}"
        )
    production_json.update(
        metrics=theirs.metrics(common),
        compared_rows=compared,
        refused_rows=n - compared,
    )
    candidate_json["metrics_on_compared_rows"] = mine.metrics(common)
    regression = _worse(mine_common, theirs_common, higher)
    if gate.max_regression is not None:
        allowed = gate.max_regression
        if regression > allowed + _SLACK:
            refusals.append(
                f"the candidate's {metric} {_fmt(mine_common)} is worse than production's "
                f"{_fmt(theirs_common)} by {_fmt(regression)}, more than MAX_REGRESSION "
                f"{_fmt(allowed)}"
            )
    else:
        allowed = DEFAULT_ALLOWANCE * (abs(theirs_common) if RELATIVE_ALLOWANCE[metric] else 1.0)
        # The one row that counts most against the candidate is left out: it alone never decides.
        kept = common.copy()
        if compared >= 2:
            against = mine.losses(metric) - theirs.losses(metric)
            against[~common] = -np.inf
            kept[int(np.argmax(against))] = False
        mine_kept = mine.metrics(kept)[metric]
        theirs_kept = theirs.metrics(kept)[metric]
        if mine_kept is None or theirs_kept is None:
            mine_kept, theirs_kept = mine_common, theirs_common
        without_worst = _worse(mine_kept, theirs_kept, higher)
        gate_json["regression_without_worst_row"] = without_worst
        if regression > _SLACK and without_worst > allowed + _SLACK:
            refusals.append(
                f"the candidate's {metric} {_fmt(mine_common)} is worse than production's "
                f"{_fmt(theirs_common)} by {_fmt(regression)}, and still by {_fmt(without_worst)} "
                f"without the held-out row that counts most against it: more than the allowance "
                f"{_fmt(allowed)} (set MAX_REGRESSION to choose another)"
            )
    gate_json["allowed_regression"] = allowed
    gate_json["regression"] = regression
    passing = (
        f"the candidate's {metric} {_fmt(mine_common)} against production's "
        f"{_fmt(theirs_common)} on {compared} rows"
    )
    return Evaluation(
        verdict=REFUSED if refusals else PASSED,
        reasons=tuple(refusals or [passing]),
        metric=metric,
        holdout_rows=n,
        candidate=candidate_json,
        production=production_json,
        gate=gate_json,
    )


def _worse(figure: float, reference: float, higher_is_better: bool) -> float:
    """How much worse `figure` is than `reference`: positive when worse."""
    return reference - figure if higher_is_better else figure - reference


def _fmt(value: float) -> str:
    return f"{value:.4g}"
