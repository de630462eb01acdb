"""The serving benchmark: the service as the container runs it, against its ceiling, in one run.

Each server is functions-framework exactly as the Dockerfile's CMD starts it, pinned to one core
(as a one-vCPU Cloud Run instance); wrk loads it from the other core. The service fetches its
model from a local gcp-storage-emulator (MODEL_URI=gs://...). Service and ceiling are loaded in
interleaved rounds, so both see the same machine; figures are medians across rounds, with the
range beside them.
"""

import argparse
import asyncio
import contextlib
import functools
import io
import json
import math
import os
import platform
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
SERVER_CORE, LOAD_CORE = 0, 1
CONNECTIONS = (16, 64)
SEED_BODY = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
BATCH_ROWS = 1000


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int  # connect, read, write and timeout errors wrk counted
    # CPU time the server's processes spent per request served (user + system, µs), when the
    # server's pid was given: other processes on its core slow it but do not add to this.
    cpu_us: float | None = None


@dataclass
class Plan:
    seconds: float  # of each wrk run
    rounds: int  # interleaved rounds of service and ceiling
    batch_rounds: int
    cold_runs: int
    min_requests: int  # served before memory is read


FULL = Plan(seconds=10, rounds=5, batch_rounds=3, cold_runs=5, min_requests=100_000)
QUICK = Plan(seconds=1, rounds=1, batch_rounds=1, cold_runs=1, min_requests=0)


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if shutil.which("taskset") else command


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


def wrk(url: str, body: str, *, seconds: float, connections: int, scratch: Path, pid: int | None = None) -> Load:
    script = scratch / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    command = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url])
    cpu_before = cpu_seconds(pid) if pid else None
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    cpu_after = cpu_seconds(pid) if pid else None
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"non-2xx answers under load from {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return Load(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_latency_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        p99_ms=_latency_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        requests=requests,
        socket_errors=sum(int(n) for n in re.findall(r"\d+", _line(r"Socket errors: .*", out))),
        cpu_us=(cpu_after - cpu_before) / requests * 1e6 if pid and requests else None,
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children (the arbiter and its worker)."""
    ticks = 0
    for each in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _line(pattern: str, text: str) -> str:
    """The first line matching `pattern`, or "" (wrk prints its socket errors only when there are some)."""
    found = re.search(pattern, text)
    return found.group(0) if found else ""


def _latency_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def memory_mb(pid: int) -> dict[str, float]:
    """Memory of a process and its children (functions-framework's arbiter and its worker), in MB.

    `pss`: proportional set size. The worker is forked from the arbiter and shares pages with it,
    which summed RSS would count twice; the container's memory counts them once. PSS also divides
    a shared library's pages among every process on the machine that maps it, so `rss_full` gives
    the other bound: every page the largest process maps, in full, plus the others' private pages.
    """
    rollups = []
    for each in [pid, *_children(pid)]:
        try:
            text = Path(f"/proc/{each}/smaps_rollup").read_text()
        except FileNotFoundError:
            continue
        rollups.append({k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, flags=re.MULTILINE)})
    largest = max(rollups, key=lambda r: r["Rss"])
    private = sum(r["Private_Clean"] + r["Private_Dirty"] for r in rollups if r is not largest)
    return {"pss": sum(r["Pss"] for r in rollups) / 1024, "rss_full": (largest["Rss"] + private) / 1024}


def rss_mb(pid: int) -> float:
    """PSS of a process and its children, in MB: the figure `memory_mb` judges, for callers that need one."""
    return memory_mb(pid)["pss"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def machine() -> dict:
    """What the figures were measured on: they depend on it more than on anything else."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, flags=re.MULTILINE)
    return {
        "cpu": models[0] if models else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": list(os.getloadavg()),
    }


@contextmanager
def emulator_with(models: dict[str, Path], log: Path):
    """A gcp-storage-emulator holding `models`; yields (emulator URL, {name: gs:// URI})."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with storage_emulator(log) as url:
        client = storage.Client(
            project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        )
        bucket = client.create_bucket("bench-models")
        uris = {}
        for name, path in models.items():
            bucket.blob(f"{name}/model.onnx").upload_from_filename(str(path))
            uris[name] = f"gs://bench-models/{name}/model.onnx"
        yield url, uris


@contextmanager
def served(cwd: Path, env: dict[str, str], log: Path):
    """The Dockerfile's CMD on a free loopback port, pinned to the server's core; yields (process, URL)."""
    port = free_port()
    command = [arg for arg in server_command() if not arg.startswith("--host")] + ["--host=127.0.0.1"]
    # The CMD runs function.server; the ceiling's directory has no `function` package of its own.
    env = {**env, "PORT": str(port), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "PYTHONPATH": str(ROOT)}
    with process(pinned(SERVER_CORE, command), cwd=cwd, env=env, log=log) as proc:
        yield proc, f"http://127.0.0.1:{port}/inference/"


def _still_serving(proc: subprocess.Popen, log: Path) -> None:
    """A server that died during the load would leave figures of nothing: stop with its log instead."""
    if proc.poll() is not None:
        raise RuntimeError(f"{log.stem} server exited with {proc.returncode} during the load:\n{log.read_text()}")


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def batched_against_alone(models: dict) -> dict:
    """bench.agreement on each model, in this process; the service's log lines kept out of the report."""
    from bench.agreement import agreement

    with contextlib.redirect_stdout(io.StringIO()):
        return {key: asyncio.run(agreement(str(model.path))) for key, model in models.items()}


def measure(plan: Plan, scratch: Path) -> dict:
    from bench.models import batch_rows, logistic_regression, onnxruntime_alone, random_forest

    started = machine()
    models = {"lr": logistic_regression(scratch), "rf": random_forest(scratch)}
    agreement = batched_against_alone(models)
    rows = batch_rows(BATCH_ROWS)
    alone = {k: onnxruntime_alone(m, rows, core=SERVER_CORE, seconds=plan.seconds / 2) for k, m in models.items()}
    batch_body = json.dumps({"instances": rows})
    load = functools.partial(wrk, seconds=plan.seconds, scratch=scratch)

    base_env = {k: v for k, v in os.environ.items() if k not in ("MODEL_URI", "PORT")}
    with emulator_with({k: m.path for k, m in models.items()}, scratch / "emulator.log") as (emulator, uris):
        env = {key: {**base_env, "STORAGE_EMULATOR_HOST": emulator, "MODEL_URI": uri} for key, uri in uris.items()}

        cold = []
        for _ in range(plan.cold_runs):
            with served(ROOT, env["lr"], scratch / "cold.log") as (_, url):
                cold.append(wait_for_answer(url))

        with served(ROOT, env["lr"], scratch / "service.log") as (service, service_url):
            wait_for_answer(service_url)
            # Before and after the load, memory is read while the other two servers are down:
            # they map the same libraries, and PSS would give the service a smaller share of them.
            memory_before = memory_mb(service.pid)
            with ExitStack() as others:
                forest, forest_url = others.enter_context(served(ROOT, env["rf"], scratch / "forest.log"))
                ceiling, ceiling_url = others.enter_context(served(CEILING, base_env, scratch / "ceiling.log"))
                for url in (forest_url, ceiling_url):
                    wait_for_answer(url)

                rounds = []
                for _ in range(plan.rounds):
                    each = {}
                    for c in CONNECTIONS:
                        each[f"service_{c}"] = load(service_url, SEED_BODY, connections=c, pid=service.pid)
                        each[f"ceiling_{c}"] = load(ceiling_url, SEED_BODY, connections=c, pid=ceiling.pid)
                    each["forest_16"] = load(forest_url, SEED_BODY, connections=16, pid=forest.pid)
                    rounds.append(each)
                served_requests = sum(r[f"service_{c}"].requests for r in rounds for c in CONNECTIONS)
                if served_requests < plan.min_requests:
                    rps = rounds[-1]["service_16"].rps
                    extra = math.ceil((plan.min_requests - served_requests) / rps) + 1
                    top_up = wrk(service_url, SEED_BODY, seconds=extra, connections=16, scratch=scratch)
                    served_requests += top_up.requests

                batches = []
                for _ in range(plan.batch_rounds):
                    batches.append({
                        "lr": load(service_url, batch_body, connections=1),
                        "rf": load(forest_url, batch_body, connections=1),
                    })
                served_requests += sum(b["lr"].requests for b in batches)
                _still_serving(forest, scratch / "forest.log")
                _still_serving(ceiling, scratch / "ceiling.log")
            _still_serving(service, scratch / "service.log")
            memory_after = memory_mb(service.pid)

    by_connections = {}
    for c in CONNECTIONS:
        service_runs = [r[f"service_{c}"] for r in rounds]
        ceiling_runs = [r[f"ceiling_{c}"] for r in rounds]
        by_connections[str(c)] = {
            "ratio": summary([s.rps / ce.rps for s, ce in zip(service_runs, ceiling_runs)]),
            "cpu_ratio": summary([ce.cpu_us / s.cpu_us for s, ce in zip(service_runs, ceiling_runs)]),
            **{
                side: {m: summary([getattr(run, m) for run in runs]) for m in ("rps", "p50_ms", "p99_ms", "cpu_us")}
                for side, runs in (("service", service_runs), ("ceiling", ceiling_runs))
            },
        }
    service_rps = {"lr": [r["service_16"].rps for r in rounds], "rf": [r["forest_16"].rps for r in rounds]}
    return {
        "plan": asdict(plan),
        "quick": plan == QUICK,
        "machine": {**started, "load_average_after": list(os.getloadavg())},
        "connections": by_connections,
        "cold_start_s": summary(cold),
        "memory_mb_before": memory_before,
        "memory_mb": memory_after,
        "requests_before_memory": served_requests,
        "batch_rows": BATCH_ROWS,
        "models": {
            key: {
                "name": model.name,
                "file_bytes": model.path.stat().st_size,
                "parity_gap": model.parity_gap,
                "service_rps": summary(service_rps[key]),
                "service_batch_ms": summary([b[key].p50_ms for b in batches]),
                "onnxruntime_single_us": summary(alone[key]["single_us"]),
                "onnxruntime_batch_ms": summary(alone[key]["batch_ms"]),
                "batched_against_alone": agreement[key],
            }
            for key, model in models.items()
        },
        "socket_errors": sum(run.socket_errors for r in rounds for run in r.values())
        + sum(run.socket_errors for b in batches for run in b.values()),
        "rounds": [{name: asdict(run) for name, run in r.items()} for r in rounds],
        "batch_rounds": [{key: asdict(run) for key, run in b.items()} for b in batches],
    }


def main(argv: list[str] | None = None) -> int:
    from bench.report import chart, markdown, verdicts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round of each, to check the harness")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("error: wrk is not installed (make bench installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(QUICK if args.quick else FULL, Path(scratch))
    figures["targets"] = verdicts(figures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(figures, indent=2) + "\n")
    report = markdown(figures)
    (args.out / "latest.md").write_text(report)
    chart(figures, args.out / "latest.png")
    print(report)
    print(f"wrote {args.out / 'latest.json'}, latest.md and latest.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
