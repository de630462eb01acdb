"""Batched against single: the service's answers to the same rows sent one request at a time, and
many at once so that their rows go through the model together, compared row by row.

onnxruntime's kernels may round differently for a batch than for one row (its Softmax gives some
iris rows probabilities 1 or 2 ulp apart), so the answers cannot be identical bit for bit; they
must name the same class and lie within a few ulp. The benchmark reports the largest difference.
"""

import asyncio

import numpy as np
import orjson

from bench.inprocess import request

CORPUS_ROWS = 4000
CONCURRENT = 64
# The most ulp a probability may move between a row answered alone and in a batch.
ULP_TOLERANCE = 4


def iris_corpus(count: int = CORPUS_ROWS, seed: int = 0) -> list[dict[str, float]]:
    """`count` rows drawn uniformly within the range of each iris feature."""
    from sklearn.datasets import load_iris

    from training.train import FEATURE_NAMES

    data = load_iris().data
    values = np.random.default_rng(seed).uniform(data.min(0), data.max(0), (count, data.shape[1]))
    return [dict(zip(FEATURE_NAMES, row)) for row in values.tolist()]


async def answers(service, rows: list[dict], concurrent: int) -> list[tuple[int, dict]]:
    """(status, body) for each row, sent `concurrent` requests at a time to `service.handle`."""
    bodies = [orjson.dumps(row) for row in rows]
    found = []
    for start in range(0, len(bodies), concurrent):
        wave = bodies[start : start + concurrent]
        responses = await asyncio.gather(*(service.handle(request(body)) for body in wave))
        found += [(response.status_code, orjson.loads(response.body)) for response in responses]
    return found


def ulp_distance(a: list[float], b: list[float], dtype: str) -> list[int]:
    """How many representable numbers of `dtype` lie between each a and b (the same sign)."""
    as_int = np.int32 if dtype == "float32" else np.int64
    left = np.asarray(a, dtype=dtype).view(as_int).astype(np.int64)
    right = np.asarray(b, dtype=dtype).view(as_int).astype(np.int64)
    return np.abs(left - right).tolist()


def compare(single: list[tuple[int, dict]], batched: list[tuple[int, dict]], dtype: str) -> dict:
    """How far the batched answers are from the single ones: rows whose class differs, and the
    largest difference of any number, in ulp of `dtype` and absolute. Every answer compared must
    be a 200: two identical error bodies are no agreement of the model's answers, so a corpus
    that errors raises ValueError naming the first such row instead of passing."""
    differing, largest_ulp, largest_abs = 0, 0, 0.0
    for index, ((status, alone), (batched_status, together)) in enumerate(
        zip(single, batched, strict=True)
    ):
        if status != 200 or batched_status != 200:
            raise ValueError(
                f"row {index}: expected a 200 alone and batched, got {status} alone "
                f"and {batched_status} batched: {str(alone)[:200]}"
            )
        numbers = [key for key, value in alone.items() if type(value) is float]
        others = {key: value for key, value in alone.items() if key not in numbers}
        if others != {k: together.get(k) for k in others}:
            differing += 1
            continue
        a, b = [alone[k] for k in numbers], [together[k] for k in numbers]
        largest_ulp = max(largest_ulp, *ulp_distance(a, b, dtype), 0)
        largest_abs = max(largest_abs, *(abs(x - y) for x, y in zip(a, b)), 0.0)
    return {"rows_differing": differing, "max_ulp": largest_ulp, "max_abs": largest_abs}


async def agreement(model_uri: str, rows: list[dict] | None = None) -> dict:
    """The service on `model_uri`, given `rows` (the iris corpus by default) alone then together."""
    from function.app import Service
    from function.settings import Settings

    rows = iris_corpus() if rows is None else rows
    service = Service(Settings(model_uri=model_uri))
    single = await answers(service, rows, 1)
    batched = await answers(service, rows, CONCURRENT)
    model = service.model.loaded
    sizes = service.coalescer(model).sizes
    return {
        "rows": len(rows),
        "concurrent": CONCURRENT,
        "largest_batch": max(sizes),
        "runs_of_one": sizes[1],
        **compare(single, batched, model.signature.output_dtype),
    }
