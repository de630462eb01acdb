"""The benchmark's report: targets judged on one run's figures, a Markdown page and a chart."""

from pathlib import Path

# figure: (label, sense, target, unit)
TARGETS = {
    "ratio_16": ("service / ceiling at 16 connections", ">=", 0.90, ""),
    "ratio_64": ("service / ceiling at 64 connections", ">=", 0.95, ""),
    "p99_16_ms": ("p99 at 16 connections", "<=", 3.0, "ms"),
    "cold_start_s": ("cold start, model from the emulator", "<=", 1.0, "s"),
    "memory_mb": ("memory after the load (PSS)", "<=", 120.0, "MB"),
    "batch_ms": ("1,000-row batch, median latency", "<=", 10.0, "ms"),
}


def measured(figures: dict) -> dict[str, float]:
    """The median each target is judged on."""
    at = figures["connections"]
    return {
        "ratio_16": at["16"]["ratio"]["median"],
        "ratio_64": at["64"]["ratio"]["median"],
        "p99_16_ms": at["16"]["service"]["p99_ms"]["median"],
        "cold_start_s": figures["cold_start_s"]["median"],
        "memory_mb": figures["memory_mb"]["pss"],
        "batch_ms": figures["models"]["lr"]["service_batch_ms"]["median"],
    }


def verdicts(figures: dict) -> list[dict]:
    rows = []
    for key, value in measured(figures).items():
        label, sense, target, unit = TARGETS[key]
        met = value >= target if sense == ">=" else value <= target
        units = f" {unit}" if unit else ""
        gap = "" if met else f"{abs(value - target):.2f}{units} {'short' if sense == '>=' else 'over'}"
        rows.append({
            "figure": key, "label": label, "value": value, "target": target, "sense": sense,
            "unit": unit, "met": met, "gap": gap,
        })
    return rows


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _spread(s: dict, fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _latency(side: dict) -> str:
    return f"{side['p50_ms']['median']:.2f} / {_spread(side['p99_ms'], '{:.2f}')}"


def _cpu(at: dict) -> str:
    return f"{at['service']['cpu_us']['median']:.1f} / {at['ceiling']['cpu_us']['median']:.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def markdown(figures: dict) -> str:
    m, plan, at = figures["machine"], figures["plan"], figures["connections"]
    rows, lr, rf = figures["batch_rows"], figures["models"]["lr"], figures["models"]["rf"]
    memory = figures["memory_mb"]
    lines = []
    if figures["quick"]:
        lines += ["**Quick mode: one short round. It checks the harness; its figures judge nothing.**", ""]
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Linux {m['kernel']}; "
        f"1-minute load average {m['load_average'][0]:.2f} at the start, "
        f"{m['load_average_after'][0]:.2f} at the end. "
        f"{_count(plan['rounds'], 'interleaved round')} of {plan['seconds']:g} s a server and "
        "connection count (service, ceiling, at 16 then 64 connections, then the random forest); "
        "server on core 0, wrk on core 1. Each figure reads median (min–max across rounds).",
        "",
        _row("single-row seed requests", *(f"{c} connections" for c in at)),
        _row(*["---"] * (len(at) + 1)),
        _row("service req/s", *(_spread(at[c]["service"]["rps"]) for c in at)),
        _row("ceiling (bare function) req/s", *(_spread(at[c]["ceiling"]["rps"]) for c in at)),
        _row("service / ceiling, per round", *(_spread(at[c]["ratio"], "{:.2f}") for c in at)),
        _row("server CPU per request, service / ceiling (µs)", *(_cpu(at[c]) for c in at)),
        _row("ceiling's CPU / service's CPU a request, per round", *(_spread(at[c]["cpu_ratio"], "{:.2f}") for c in at)),
        _row("service p50 / p99 (ms)", *(_latency(at[c]["service"]) for c in at)),
        _row("ceiling p50 / p99 (ms)", *(_latency(at[c]["ceiling"]) for c in at)),
        "",
        _row("", "service"),
        _row("---", "---"),
        _row(
            "cold start to first correct answer, model from the emulator "
            f"(s, {_count(plan['cold_runs'], 'start')})",
            _spread(figures["cold_start_s"], "{:.2f}"),
        ),
        _row(
            f"memory after {figures['requests_before_memory']:,} requests (MB, PSS of arbiter + worker)",
            f"{memory['pss']:.0f} (before the load: {figures['memory_mb_before']['pss']:.0f}; "
            f"RSS with shared pages in full: {memory['rss_full']:.0f})",
        ),
        _row(
            f"{rows:,}-row batch, median latency at 1 connection "
            f"(ms, {_count(plan['batch_rounds'], 'round')})",
            _spread(lr["service_batch_ms"], "{:.2f}"),
        ),
        "",
        _row("target", "measured", "met"),
        _row("---", "---", "---"),
    ]
    for row in figures["targets"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        value = f"{row['value']:.0f}" if row["unit"] == "MB" else f"{row['value']:.2f}"
        verdict = "met" if row["met"] else f"missed: {row['gap']}"
        lines.append(_row(f"{row['label']} {row['sense']} {row['target']:g}{unit}", f"{value}{unit}", verdict))
    lines += [
        "",
        _row(
            "model", "ONNX file", "service, single-row req/s at 16 connections",
            "onnxruntime alone, one row (µs)", f"service, {rows:,}-row batch (ms)",
            f"onnxruntime alone, {rows:,} rows (ms)",
        ),
        _row(*["---"] * 6),
    ]
    for model in figures["models"].values():
        lines.append(_row(
            model["name"],
            f"{model['file_bytes'] / 1024:.0f} KB",
            _spread(model["service_rps"]),
            _spread(model["onnxruntime_single_us"], "{:.1f}"),
            _spread(model["service_batch_ms"], "{:.2f}"),
            _spread(model["onnxruntime_batch_ms"], "{:.3f}"),
        ))
    rps = at["16"]["service"]["rps"]["median"]
    agree = {key: model["batched_against_alone"] for key, model in figures["models"].items()}
    first = next(iter(agree.values()))
    lines += [
        "",
        f"Batched against alone: {first['rows']:,} random rows within iris's range, sent to the "
        f"service in process one request at a time, then {first['concurrent']} at a time (single "
        "rows that wait together go through the model together, here up to "
        f"{max(a['largest_batch'] for a in agree.values())} a run). "
        + "; ".join(
            f"{figures['models'][key]['name']}: {_count(a['rows_differing'], 'row')} answered "
            f"differently, probabilities at most {a['max_ulp']} ulp apart ({a['max_abs']:.1e})"
            for key, a in agree.items()
        )
        + ".",
        "",
        f"wrk counted {figures['socket_errors']:,} socket errors (connect, read, write, timeout) "
        "in all the runs.",
        "",
        "Server CPU per request is the user and system time of the server's processes (arbiter and "
        "worker) over the requests it served in that load: other processes sharing its core slow "
        "it down, which req/s counts against it, but do not add to its CPU time, so on a shared "
        "machine the CPU ratio is the steadier of the two.",
        "",
        f"The {rf['name']} is trained on iris with a fixed seed and exported with skl2onnx as the "
        "service loads it (one float32 input, probabilities as a tensor); onnxruntime matches "
        f"scikit-learn within {rf['parity_gap']:.1e} on the 150 iris rows. onnxruntime alone is "
        "`session.run` in one process on core 0 with the service's session options (one intra-op "
        "and one inter-op thread) and inputs built in advance; the service's figures add HTTP, JSON "
        f"and validation. Both batches are the same {rows:,} iris rows.",
        "",
        f"One instance sustains about {rps:,.0f} single-row requests per second: for N req/s, "
        f"set MAX_INSTANCES to at least N / {rps:,.0f}, rounded up.",
    ]
    return "\n".join(lines) + "\n"


def chart(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at, models = figures["connections"], figures["models"]
    fig, ((rps, p99), (model_rps, model_batch)) = plt.subplots(2, 2, figsize=(10, 7))
    colours = {"service": "#1a73e8", "ceiling": "#9aa0a6", "alone": "#34a853"}

    def bars(axis, x, stats, colour, label, width=0.38):
        medians = [s["median"] for s in stats]
        whiskers = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
        axis.bar(x, medians, width=width, color=colour, label=label, yerr=whiskers, capsize=3)

    positions = range(len(at))
    for offset, side in ((-0.2, "service"), (0.2, "ceiling")):
        bars(rps, [p + offset for p in positions], [at[c][side]["rps"] for c in at], colours[side], side)
        bars(p99, [p + offset for p in positions], [at[c][side]["p99_ms"] for c in at], colours[side], side)
    for axis, title in ((rps, "single-row requests per second"), (p99, "p99 latency (ms)")):
        axis.set_xticks(list(positions), [f"{c} connections" for c in at])
        axis.set_title(title)
        axis.legend()

    names = [m["name"] for m in models.values()]
    places = range(len(names))
    bars(model_rps, places, [m["service_rps"] for m in models.values()], colours["service"], "service", 0.5)
    model_rps.set_xticks(places, names)
    model_rps.set_title("single-row req/s through the service, 16 connections")
    service_batch = [m["service_batch_ms"] for m in models.values()]
    alone_batch = [m["onnxruntime_batch_ms"] for m in models.values()]
    bars(model_batch, [i - 0.2 for i in places], service_batch, colours["service"], "service")
    bars(model_batch, [i + 0.2 for i in places], alone_batch, colours["alone"], "onnxruntime alone")
    model_batch.set_xticks(places, names)
    model_batch.set_title(f"{figures['batch_rows']:,}-row batch latency (ms)")
    model_batch.legend()

    ratio16, ratio64 = at["16"]["ratio"]["median"], at["64"]["ratio"]["median"]
    fig.suptitle(f"service at {ratio16:.2f} of the ceiling at 16 connections, {ratio64:.2f} at 64; "
                 "one core each; whiskers: range across rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
