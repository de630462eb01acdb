"""The serving benchmark: the service as the container runs it, against its ceiling, in one run.

Each server is functions-framework exactly as the Dockerfile's CMD starts it, pinned to one core
(as a one-vCPU Cloud Run instance); wrk loads it from the other core. The service fetches its
model from a local gcp-storage-emulator (MODEL_URI=gs://...). Figures are medians of several runs.
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.processes import BIN, free_port, process, storage_emulator

ROOT = Path(__file__).resolve().parent.parent
CEILING = ROOT / "bench" / "ceiling"
RESULTS = ROOT / "bench" / "results"
SERVER_CORE, LOAD_CORE = "0", "1"
SEED_BODY = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
BATCH_ROWS = 1000
TARGETS = {
    "rps": ("single-row req/s", ">=", 3400),
    "ratio": ("share of the ceiling", ">=", 0.85),
    "p99_ms": ("p99 at 16 connections (ms)", "<=", 10.0),
    "cold_start_s": ("cold start, model from the emulator (s)", "<=", 1.0),
    "rss_mb": ("memory after the load (MB, PSS of arbiter + worker)", "<=", 120.0),
    "batch_ms": ("1,000-row batch, median (ms)", "<=", 10.0),
}


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


@dataclass
class Plan:
    seconds: float
    runs: int
    cold_runs: int
    connections: int
    min_requests: int


FULL = Plan(seconds=10, runs=3, cold_runs=5, connections=16, min_requests=100_000)
QUICK = Plan(seconds=1, runs=1, cold_runs=1, connections=16, min_requests=0)


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


def post(url: str, body: str, timeout: float = 2.0) -> dict | None:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def wait_for_answer(url: str, deadline_s: float = 60) -> float:
    """Seconds until the first correct prediction."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        answer = post(url, SEED_BODY, timeout=5)
        if answer and answer.get("target") == "setosa":
            return time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError(f"no correct answer from {url} within {deadline_s} s")


def server_command() -> list[str]:
    """The Dockerfile's CMD, so the benchmark serves exactly as the container does."""
    text = (ROOT / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    return json.loads(cmd)


def wrk(url: str, body: str, *, seconds: float, connections: int, scratch: Path) -> Load:
    script = scratch / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    command = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url])
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"non-2xx answers under load from {url}:\n{out}")
    return Load(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_latency_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        p99_ms=_latency_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
    )


def _latency_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def rss_mb(pid: int) -> float:
    """Memory of a process and its children (gunicorn's arbiter and its worker), in MB.

    Proportional set size: the worker is forked from the arbiter and shares pages with it, which
    summed RSS would count twice; the container's memory counts them once.
    """
    total = 0
    for each in [pid] + [int(p) for p in _children(pid)]:
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except FileNotFoundError:
            continue
        total += int(re.search(r"^Pss:\s+(\d+) kB", rollup, flags=re.MULTILINE).group(1))
    return total / 1024


def _children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


@contextmanager
def emulator_with_model(scratch: Path):
    """A gcp-storage-emulator holding the trained model; yields (emulator URL, gs:// URI)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from training.train import export, train, write_model

    model = scratch / "model.onnx"
    trained = train()
    write_model(model, export(trained), trained)
    with storage_emulator(scratch / "emulator.log") as url:
        client = storage.Client(
            project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        )
        client.create_bucket("bench-models").blob("iris/model.onnx").upload_from_filename(str(model))
        yield url, "gs://bench-models/iris/model.onnx"


@contextmanager
def served(cwd: Path, env: dict[str, str], log: Path):
    """The Dockerfile's CMD on a free loopback port, pinned to the server's core; yields (process, URL)."""
    port = free_port()
    command = [arg for arg in server_command() if not arg.startswith("--host")] + ["--host=127.0.0.1"]
    env = {**env, "PORT": str(port), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    with process(pinned(SERVER_CORE, command), cwd=cwd, env=env, log=log) as proc:
        yield proc, f"http://127.0.0.1:{port}/inference/"


def measure(plan: Plan, scratch: Path) -> dict:
    base_env = {k: v for k, v in os.environ.items() if k not in ("MODEL_URI", "PORT")}
    batch_body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * BATCH_ROWS})
    with ExitStack() as stack:
        emulator, model_uri = stack.enter_context(emulator_with_model(scratch))
        service_env = {**base_env, "STORAGE_EMULATOR_HOST": emulator, "MODEL_URI": model_uri}

        cold = []
        for _ in range(plan.cold_runs):
            with served(ROOT, service_env, scratch / "cold.log") as (_, url):
                cold.append(wait_for_answer(url))

        service, service_url = stack.enter_context(served(ROOT, service_env, scratch / "service.log"))
        ceiling, ceiling_url = stack.enter_context(served(CEILING, base_env, scratch / "ceiling.log"))
        wait_for_answer(service_url)
        wait_for_answer(ceiling_url)
        rss_before = rss_mb(service.pid)

        service_runs, ceiling_runs = [], []
        for _ in range(plan.runs):  # interleaved, so both see the same machine
            service_runs.append(wrk(service_url, SEED_BODY, seconds=plan.seconds, connections=plan.connections, scratch=scratch))
            ceiling_runs.append(wrk(ceiling_url, SEED_BODY, seconds=plan.seconds, connections=plan.connections, scratch=scratch))
        requests_served = sum(run.requests for run in service_runs)
        if requests_served < plan.min_requests:
            seconds = math.ceil((plan.min_requests - requests_served) / service_runs[-1].rps) + 1
            requests_served += wrk(service_url, SEED_BODY, seconds=seconds, connections=plan.connections, scratch=scratch).requests

        batch = [wrk(service_url, batch_body, seconds=plan.seconds, connections=1, scratch=scratch) for _ in range(plan.runs)]
        rss_after = rss_mb(service.pid)
        assert ceiling.poll() is None and service.poll() is None

    service_rps = statistics.median(run.rps for run in service_runs)
    ceiling_rps = statistics.median(run.rps for run in ceiling_runs)
    return {
        "plan": asdict(plan),
        "service": {
            "rps": service_rps,
            "p50_ms": statistics.median(run.p50_ms for run in service_runs),
            "p99_ms": statistics.median(run.p99_ms for run in service_runs),
            "runs": [asdict(run) for run in service_runs],
        },
        "ceiling": {
            "rps": ceiling_rps,
            "p50_ms": statistics.median(run.p50_ms for run in ceiling_runs),
            "p99_ms": statistics.median(run.p99_ms for run in ceiling_runs),
            "runs": [asdict(run) for run in ceiling_runs],
        },
        "ratio": service_rps / ceiling_rps,
        "cold_start_s": statistics.median(cold),
        "cold_starts_s": cold,
        "rss_mb_before": rss_before,
        "rss_mb": rss_after,
        "requests_before_rss": requests_served,
        "batch_ms": statistics.median(run.p50_ms for run in batch),
        "batch_rows": BATCH_ROWS,
    }


def verdicts(figures: dict) -> list[dict]:
    actual = {
        "rps": figures["service"]["rps"],
        "ratio": figures["ratio"],
        "p99_ms": figures["service"]["p99_ms"],
        "cold_start_s": figures["cold_start_s"],
        "rss_mb": figures["rss_mb"],
        "batch_ms": figures["batch_ms"],
    }
    rows = []
    for key, (label, sense, target) in TARGETS.items():
        value = actual[key]
        met = value >= target if sense == ">=" else value <= target
        gap = "" if met else f"missed by {abs(value - target) / target:.0%}"
        rows.append({"figure": key, "label": label, "value": value, "target": f"{sense} {target}", "met": met, "gap": gap})
    return rows


def markdown(figures: dict, rows: list[dict]) -> str:
    s, c = figures["service"], figures["ceiling"]
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) and v < 10 else f"{v:,.0f}"  # noqa: E731
    lines = [
        "| | service | ceiling (bare function) |",
        "| --- | --- | --- |",
        f"| single-row req/s (median) | {s['rps']:,.0f} | {c['rps']:,.0f} |",
        f"| p50 / p99 latency at {figures['plan']['connections']} connections (ms) | {s['p50_ms']:.2f} / {s['p99_ms']:.2f} | {c['p50_ms']:.2f} / {c['p99_ms']:.2f} |",
        f"| service / ceiling | {figures['ratio']:.0%} | 100% |",
        f"| cold start to first correct answer (s, median of {len(figures['cold_starts_s'])}) | {figures['cold_start_s']:.2f} | |",
        f"| memory after {figures['requests_before_rss']:,} requests (MB, PSS of arbiter + worker) | {figures['rss_mb']:.0f} (before the load: {figures['rss_mb_before']:.0f}) | |",
        f"| {figures['batch_rows']:,}-row batch, median latency (ms) | {figures['batch_ms']:.2f} | |",
        "",
        "| target | value | met |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {r['label']} {r['target']} | {fmt(r['value'])} | {'yes' if r['met'] else 'no, ' + r['gap']} |" for r in rows]
    lines += [
        "",
        f"One instance sustains about {s['rps']:,.0f} single-row requests per second: for N req/s, "
        f"set MAX_INSTANCES to at least N / {s['rps']:,.0f}, rounded up.",
    ]
    return "\n".join(lines) + "\n"


def chart(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["service", "ceiling"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.bar(names, [figures[n]["rps"] for n in names], color=["#1a73e8", "#9aa0a6"])
    left.set_title("single-row requests per second")
    for offset, metric in ((-0.2, "p50_ms"), (0.2, "p99_ms")):
        right.bar([i + offset for i in range(2)], [figures[n][metric] for n in names], width=0.4, label=metric[:3])
    right.set_xticks(range(2), names)
    right.set_title("latency at 16 connections (ms)")
    right.legend()
    fig.suptitle(f"service at {figures['ratio']:.0%} of the ceiling, one core each")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run of each, to check the harness")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for tool in ("wrk",):
        if not shutil.which(tool):
            print(f"error: {tool} is not installed (make bench installs it)", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(QUICK if args.quick else FULL, Path(scratch))
    rows = verdicts(figures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps({**figures, "targets": rows}, indent=2) + "\n")
    table = markdown(figures, rows)
    (args.out / "latest.md").write_text(table)
    chart(figures, args.out / "latest.png")
    print(table)
    print(f"wrote {args.out / 'latest.json'}, latest.md and latest.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
