"""Single rows that arrive together go through the model as one batch: the same answers as alone,
and a row that fails, fails alone. Requests are the real handler's, in process, sent together with
asyncio.gather so that they wait in the loop together as under load; the coalescer's counts show
that they did go through the model together."""

import asyncio
import json

import pytest

from bench.agreement import CONCURRENT, ULP_TOLERANCE, agreement, answers, compare, iris_corpus
from bench.inprocess import request
from function.app import Service
from function.settings import Settings
from tests.own_models import shop_rows
from tests.test_graphs_that_break_batching import rows_with_a_first_value_of_at_least_zero
from tests.test_own_models import records

NOT_FINITE = "the row: expected the model to give finite probabilities"


def served(model_uri: str) -> Service:
    service = Service(Settings(model_uri=model_uri))
    asyncio.run(answers(service, iris_corpus(1), 1))  # loads the model
    return service


def test_iris_answers_batched_and_alone_agree_on_thousands_of_rows(model_file):
    figures = asyncio.run(agreement(str(model_file)))

    print(f"iris logistic regression, batched against alone: {figures}")
    assert figures["rows"] >= 4000
    assert figures["largest_batch"] == CONCURRENT
    assert figures["rows_differing"] == 0
    assert figures["max_ulp"] <= ULP_TOLERANCE


def test_rows_of_strings_and_numbers_batch_per_input_and_agree(shop_classifier):
    rows = records(shop_rows(1000, seed=7))

    figures = asyncio.run(agreement(str(shop_classifier.path), rows))

    print(f"shop classifier (one input per feature), batched against alone: {figures}")
    assert figures["largest_batch"] == CONCURRENT
    assert figures["rows_differing"] == 0
    assert figures["max_ulp"] <= ULP_TOLERANCE


def together(service: Service, rows: list[dict]) -> list[tuple[int, dict]]:
    return asyncio.run(answers(service, rows, len(rows)))


def test_a_row_whose_answer_is_not_finite_fails_alone_in_its_batch(model_file):
    service = served(str(model_file))
    rows = iris_corpus(8, seed=3)
    rows[3] = {name: 1e308 for name in rows[3]}
    alone = asyncio.run(answers(service, rows, 1))
    sizes = service.coalescer(service.model.loaded).sizes
    before = sizes[len(rows)]

    got = together(service, rows)

    assert sizes[len(rows)] == before + 1  # one model run for the eight rows
    assert got[3][0] == 422 and got[3][1]["error"].startswith(NOT_FINITE)
    assert got[3] == alone[3]
    others, others_alone = got[:3] + got[4:], alone[:3] + alone[4:]
    assert [status for status, _ in others] == [200] * 7
    assert compare(others_alone, others, "float64")["rows_differing"] == 0
    assert compare(others_alone, others, "float64")["max_ulp"] <= ULP_TOLERANCE


def test_agreement_counts_only_answers_not_identical_errors():
    error = (422, {"error": "the row: expected the model to give finite probabilities"})
    answer = (200, {"setosa_probability": 0.5, "target": "setosa"})

    with pytest.raises(ValueError, match="row 1: expected a 200 alone and batched, got 422 alone and 422"):
        compare([answer, error], [answer, error], "float64")
    with pytest.raises(ValueError, match="row 0: expected a 200 alone and batched, got 200 alone and 422"):
        compare([answer], [error], "float64")


@pytest.fixture
def drops_negative_rows(tmp_path):
    """A regressor whose graph gives no answer for a row with a negative first value: a run of
    rows with one such row is refused whole, as it answers fewer rows than it was given."""
    path = tmp_path / "drops-negative-rows.onnx"
    path.write_bytes(rows_with_a_first_value_of_at_least_zero())
    return path


def test_a_row_the_graph_refuses_fails_alone_and_its_neighbours_are_answered(drops_negative_rows):
    service = served(str(drops_negative_rows))
    rows = [{"a": float(index), "b": 1.0} for index in range(6)]
    rows[2]["a"] = -1.0
    alone = asyncio.run(answers(service, rows, 1))
    coalescer = service.coalescer(service.model.loaded)
    before = coalescer.sizes[len(rows)]

    got = together(service, rows)

    assert coalescer.sizes[len(rows)] == before + 1  # tried together, refused by the graph
    assert coalescer.rerun_alone == len(rows)
    assert got[2][0] != 200 and got[2] == alone[2]  # as it fails when sent alone
    assert [status for status, _ in got[:2] + got[3:]] == [200] * 5
    others, others_alone = got[:2] + got[3:], alone[:2] + alone[3:]
    assert compare(others_alone, others, "float64") == {"rows_differing": 0, "max_ulp": 0, "max_abs": 0.0}


def test_a_request_cancelled_while_waiting_leaves_the_others_their_answers(model_file):
    service = served(str(model_file))
    bodies = [json.dumps(row).encode() for row in iris_corpus(4, seed=5)]

    async def send():
        tasks = [asyncio.create_task(service.handle(request(body))) for body in bodies]
        await asyncio.sleep(0)  # each task is now waiting for the model, the run not yet done
        tasks[1].cancel()
        # Bounded: without the answers, the others would wait for ever.
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

    got = asyncio.run(send())

    assert isinstance(got[1], asyncio.CancelledError)
    assert [response.status_code for i, response in enumerate(got) if i != 1] == [200] * 3
    assert service.coalescer(service.model.loaded).sizes[4] == 1


def test_the_heap_is_frozen_and_young_collections_spaced_once_the_model_loads(model_file):
    import gc

    from function.app import GC_YOUNGEST_THRESHOLD

    served(str(model_file))

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GC_YOUNGEST_THRESHOLD


@pytest.mark.parametrize(
    ("change", "plain"),
    [
        ({}, True),
        ({"petal_width": 2}, False),  # an integer: the full check takes it
        ({"petal_width": True}, False),
        ({"petal_width": None}, False),
        ({"petal_width": "0.2"}, False),
        ({"petal_width": 1e309}, False),  # infinity, as JSON's 1e309 parses
        ({"extra": 1.0}, False),
    ],
)
def test_only_a_plainly_valid_row_takes_the_lean_check(model_file, change, plain):
    from function.model import load_model

    signature = load_model(str(model_file), 10).signature
    row = {**iris_corpus(1)[0], **change}

    assert (signature.plain_row(row) is not None) is plain


def test_the_lean_check_of_strings_takes_only_known_categories(shop_classifier):
    from function.model import load_model

    signature = load_model(str(shop_classifier.path), 10).signature
    row = records(shop_rows(1, seed=2))[0]

    assert signature.plain_row(row) == [row[name] for name in signature.feature_names]
    assert signature.plain_row({**row, "color": "purple"}) is None
    assert signature.plain_row({**row, "size": 1e39}) is None  # past float32: the full check says so


def test_a_missing_feature_misses_the_lean_check(model_file):
    from function.model import load_model

    signature = load_model(str(model_file), 10).signature
    row = iris_corpus(1)[0]
    del row["sepal_length"]

    assert signature.plain_row(row) is None
