"""The benchmark harness, run once briefly so that it keeps working. Figures are not judged here."""

import json

import pytest

from bench.agreement import ULP_TOLERANCE
from bench.report import TARGETS, verdicts
from bench.run import CONNECTIONS, main


def test_quick_bench_writes_figures_table_and_chart(tmp_path):
    assert main(["--quick", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "latest.json").read_text())
    assert set(report["machine"]) >= {"cpu", "cores", "python", "kernel"}
    assert list(report["connections"]) == [str(c) for c in CONNECTIONS]
    for at in report["connections"].values():
        assert at["ratio"]["min"] <= at["ratio"]["median"] <= at["ratio"]["max"]
        assert at["cpu_ratio"]["median"] > 0
        for side in ("service", "ceiling"):
            assert at[side]["rps"]["median"] > 0
            assert 0 < at[side]["p50_ms"]["median"] <= at[side]["p99_ms"]["median"]
    assert report["cold_start_s"]["median"] > 0 and report["memory_mb"]["pss"] > 0
    assert [m["name"] for m in report["models"].values()] == ["logistic regression", "random forest (100 trees)"]
    for model in report["models"].values():
        for figure in ("service_rps", "service_batch_ms", "onnxruntime_single_us", "onnxruntime_batch_ms"):
            assert model[figure]["median"] > 0
        agreement = model["batched_against_alone"]
        assert agreement["largest_batch"] > 1
        assert agreement["rows_differing"] == 0 and agreement["max_ulp"] <= ULP_TOLERANCE
    assert [row["figure"] for row in report["targets"]] == list(TARGETS)

    page = (tmp_path / "latest.md").read_text()
    assert "Quick mode" in page and report["machine"]["cpu"] in page
    assert "| single-row seed requests | 16 connections | 64 connections |" in page
    assert "| service / ceiling, per round |" in page
    assert "| server CPU per request, service / ceiling (µs) |" in page
    assert "| target | measured | met |" in page
    assert "| random forest (100 trees) |" in page
    assert "Batched against alone: 4,000 random rows" in page
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _figures(ratio_16: float, p99_16_ms: float, memory_mb: float) -> dict:
    median = lambda value: {"median": value, "min": value, "max": value}  # noqa: E731
    return {
        "connections": {
            "16": {"ratio": median(ratio_16), "service": {"p99_ms": median(p99_16_ms)}},
            "64": {"ratio": median(0.97)},
        },
        "cold_start_s": median(0.5),
        "memory_mb": {"pss": memory_mb},
        "models": {"lr": {"service_batch_ms": median(4.0)}},
    }


@pytest.mark.parametrize(
    ("figures", "missed"),
    [
        (_figures(ratio_16=0.92, p99_16_ms=2.0, memory_mb=100), {}),
        (_figures(ratio_16=0.85, p99_16_ms=2.0, memory_mb=100), {"ratio_16": "0.05 short"}),
        (_figures(ratio_16=0.95, p99_16_ms=3.5, memory_mb=121), {"p99_16_ms": "0.50 ms over", "memory_mb": "1.00 MB over"}),
        (_figures(ratio_16=0.90, p99_16_ms=3.0, memory_mb=120), {}),
    ],
)
def test_targets_say_by_how_much_each_miss_is_missed(figures, missed):
    rows = verdicts(figures)

    assert {row["figure"]: row["gap"] for row in rows if not row["met"]} == missed
    assert all(row["gap"] == "" for row in rows if row["met"])


def test_in_process_harness_measures_both_handlers(model_file):
    import asyncio

    from bench.inprocess import CONCURRENT, measure

    figures = asyncio.run(measure(str(model_file), rounds=1, calls=200))

    assert set(figures) == {1, CONCURRENT}
    for each in figures.values():
        assert each["service_us"] > 0 and each["ceiling_us"] > 0
