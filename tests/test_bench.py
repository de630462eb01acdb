"""The benchmark harness, run once briefly so that it keeps working. Figures are not judged here."""

import json

from bench.run import TARGETS, main


def test_quick_bench_writes_figures_table_and_chart(tmp_path, capsys):
    assert main(["--quick", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "latest.json").read_text())
    for side in ("service", "ceiling"):
        assert report[side]["rps"] > 0
        assert 0 < report[side]["p50_ms"] <= report[side]["p99_ms"]
    assert report["cold_start_s"] > 0 and report["rss_mb"] > 0 and report["batch_ms"] > 0
    assert [row["figure"] for row in report["targets"]] == list(TARGETS)
    assert "| single-row req/s (median) |" in (tmp_path / "latest.md").read_text()
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_in_process_harness_measures_both_handlers(model_file):
    import asyncio

    from bench.inprocess import measure

    figures = asyncio.run(measure(str(model_file), rounds=1, calls=200))

    assert figures["service_us"] > 0 and figures["ceiling_us"] > 0
