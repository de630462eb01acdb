"""The sampled prediction log: PREDICTION_LOG_RATE of the answered requests, each logged as one
structured entry with the rows, the answers, and the model's name and version, so that two
models serving side by side can be compared in Cloud Logging.

Cloud Logging refuses entries over 256 KB; an entry here holds at most MAX_ENTRY_BYTES of rows
and answers (the first rows of a large batch) and says how many rows it left out.
"""

import json
from typing import Any

from function.encoders.seed import answers_of
from function.signature import Batch, Prediction, Signature

MESSAGE = "prediction"
MAX_ENTRY_BYTES = 64 * 1024
# A long string value is cut in the log; the request itself was accepted whole.
MAX_STRING_CHARS = 256


def entry_fields(signature: Signature, batch: Batch, prediction: Prediction) -> dict[str, Any]:
    """The fields of one log entry: rows named by feature, and the answer to each."""
    names = signature.feature_names
    answers = answers_of(prediction, signature)
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    size = 0
    for row, answer in zip(batch.rows, answers):
        named = {name: _short(value) for name, value in zip(names, row)}
        size += len(json.dumps(named)) + len(json.dumps(answer)) + 4
        if size > MAX_ENTRY_BYTES:
            break
        inputs.append(named)
        outputs.append(answer)
    return {
        "model_name": signature.name,
        "model_version": signature.version,
        "rows": len(batch.rows),
        "rows_logged": len(inputs),
        "inputs": inputs,
        "answers": outputs,
    }


def _short(value: Any) -> Any:
    if type(value) is str and len(value) > MAX_STRING_CHARS:
        return value[: MAX_STRING_CHARS - 3] + "..."
    return value
