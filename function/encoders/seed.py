"""The service's own JSON dialect, out: the seed's answer and its batch.

- a classifier: `{"<class>_probability": p, ..., "target": "<class>"}`;
- a regressor: `{"prediction": value}`;
- a batch: `{"predictions": [answer, ...]}`, one answer per row in order.
"""

import functools
from typing import Any

from function.schema import PREDICTIONS_KEY
from function.signature import CLASSIFICATION, Batch, Prediction, Signature

TARGET_KEY = "target"
PREDICTION_KEY = "prediction"
PROBABILITY_SUFFIX = "_probability"
ANSWER_SCHEMA = "PredictAnswer"
BATCH_ANSWER_SCHEMA = "PredictBatchAnswer"
RESPONSE_SCHEMA = "PredictResponse"


def encode(prediction: Prediction, batch: Batch, signature: Signature) -> Any:
    probabilities = prediction.probabilities
    if probabilities is not None:
        keys = probability_keys(signature.classes)
        answers = [
            dict(zip(keys, row), target=label)
            for row, label in zip(probabilities, prediction.labels)
        ]
    else:
        answers = [{PREDICTION_KEY: value} for value in prediction.values]
    return answers[0] if batch.single else {PREDICTIONS_KEY: answers}


def answers_of(prediction: Prediction, signature: Signature) -> list[dict[str, Any]]:
    """One answer object per row."""
    answers = encode(prediction, Batch([]), signature)
    return answers[PREDICTIONS_KEY]


@functools.lru_cache(maxsize=8)
def probability_keys(classes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{name}{PROBABILITY_SUFFIX}" for name in classes)


def answer_schema(signature: Signature) -> tuple[dict, dict[str, dict]]:
    """(the answer's schema, the component schemas it refers to by name)."""
    if signature.task == CLASSIFICATION:
        keys = probability_keys(signature.classes)
        answer = {
            "type": "object",
            "description": "The probability of each class, and the most probable class.",
            "properties": {
                **{key: {"type": "number", "minimum": 0, "maximum": 1} for key in keys},
                TARGET_KEY: {"type": "string", "enum": list(signature.classes)},
            },
            "required": [*keys, TARGET_KEY],
        }
    else:
        answer = {
            "type": "object",
            "description": "The model's prediction.",
            "properties": {PREDICTION_KEY: {"type": "number"}},
            "required": [PREDICTION_KEY],
        }
    batch = {
        "type": "object",
        "description": "One answer per row, in the order of the rows.",
        "properties": {PREDICTIONS_KEY: {"type": "array", "items": _ref(ANSWER_SCHEMA)}},
        "required": [PREDICTIONS_KEY],
    }
    return _ref(RESPONSE_SCHEMA), {
        ANSWER_SCHEMA: answer,
        BATCH_ANSWER_SCHEMA: batch,
        RESPONSE_SCHEMA: {"oneOf": [_ref(ANSWER_SCHEMA), _ref(BATCH_ANSWER_SCHEMA)]},
    }


def answer_examples(signature: Signature) -> dict[str, dict]:
    """The model's real answers to the documented example row, alone and as a batch of two."""
    prediction = signature.example_answer
    if prediction is None:
        return {}
    (answer,) = answers_of(prediction, signature)
    return {
        "one row": {"summary": "The answer to one row", "value": answer},
        "batch": {
            "summary": "The answers to a batch",
            "value": {PREDICTIONS_KEY: [answer, answer]},
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
