"""The service's memory under the worst bodies its limits allow, at full concurrency.

Every body is at most the body limit and built to parse into as much Python as a body of that
size can (lists nested a thousand deep: 32 bytes of objects a byte; objects of many keys; the
a `parameters` object of empty objects), sent to each route of each dialect, from `concurrency`
connections at once; then the same while `concurrency - 1` connections hold an upload one byte
short of the limit (the most a request holds while it waits); then answers that echo an id as
long as the limit allows. The figure is the worker's peak resident set (VmHWM, which no sample
can miss) plus the arbiter's private pages: what the container's memory counts.

`python -m bench.memory` measures at several concurrencies and body limits, the figures that
`function.capacity` is fitted to.
"""

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
# orjson parses at most 1,024 levels; the outer containers of a body take a few.
NEST_DEPTH = 1000
NEST = b"[" * NEST_DEPTH + b"]" * NEST_DEPTH


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: bytes
    statuses: tuple[int, ...]  # what the service must answer
    # Sent by every connection at once, over and over: a body that carries a valid row, which
    # waits for the model with the rows that came with it (and held the parse, before).
    together: bool = False


def _fill(prefix: bytes, unit: bytes, suffix: bytes, size: int, limit: int | None = None) -> bytes:
    """prefix, `unit` repeated (comma-separated) to fill `size` bytes (or `limit` units), suffix."""
    count = (size - len(prefix) - len(suffix) + 1) // (len(unit) + 1)
    if limit is not None:
        count = min(count, limit)
    return prefix + b",".join([unit] * count) + suffix


def _keys(prefix: bytes, value: bytes, suffix: bytes, size: int) -> bytes:
    parts, used, index = [], len(prefix) + len(suffix), 0
    while True:
        part = b'"%x":%s' % (index, value)
        if used + len(part) + 1 > size:
            return prefix + b",".join(parts) + suffix
        parts.append(part)
        used += len(part) + 1
        index += 1


def worst_cases(
    max_body_bytes: int, model_name: str, features: list[str], outputs: list[str], max_rows: int
) -> list[Case]:
    """The bodies of at most `max_body_bytes` that parse into the most, for every dialect.

    Per byte of body, orjson builds 32 bytes of lists nested deep, 24 of empty objects, 16 of
    objects of many keys: the first is the largest parse, but costs five times the CPU of the
    second (250 ms a MiB), so the bodies sent by every connection at once are of the second.
    """
    size = max_body_bytes
    infer = f"/v2/models/{model_name}/infer"
    tensors = [{"name": name, "datatype": "FP64", "shape": [1], "data": [1.0]} for name in features]
    valid_v2 = json.dumps({"inputs": tensors}).encode()
    id_room = size - len(valid_v2) - len(b'"id":"",')
    row = json.dumps([1.0] * len(features)).encode()
    output = json.dumps({"name": outputs[0]}).encode()
    return [
        Case("seed one row: lists nested 1,000 deep", "/predict", _fill(b"[", NEST, b"]", size), (400,)),
        Case("seed one row: empty objects", "/predict", _fill(b"[", b"{}", b"]", size), (400,)),
        Case("seed one row: an object of many keys", "/", _keys(b"{", b"0", b"}", size), (400,)),
        Case("seed batch: rows of nested lists", "/inference/", _fill(b'{"instances":[', NEST, b"]}", size, max_rows), (400,)),
        Case("seed batch: rows of empty objects", "/inference/", _fill(b'{"instances":[', b"{}", b"]}", size), (400, 413)),
        Case("seed batch: the most rows", "/inference/", _fill(b'{"instances":[', row, b"]}", size, max_rows), (200,), together=True),
        Case("v2: inputs of nested lists", infer, _fill(b'{"inputs":[', NEST, b"]}", size), (400,)),
        Case("v2: parameters of empty objects", infer, _keys(b'{"parameters":{', b"{}", b"}}", size), (400,)),
        Case("v2: the longest id", infer, b'{"id":"' + b"i" * id_room + b'",' + valid_v2[1:], (200,), together=True),
        # A valid row with as much besides it as a body can carry.
        Case("v2: one row with a parameter of empty objects", infer, _fill(b'{"parameters":{"p":[', b"{}", b"]}," + valid_v2[1:], size), (400,), together=True),
        Case("v2: one row asking for an output again and again", infer, _fill(valid_v2[:-1] + b',"outputs":[', output, b"]}", size), (200,), together=True),
    ]


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: memory\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def send(url: str, case: Case, *, read_after: float = 0) -> int:
    """The status of `case` sent on its own connection; `read_after`: seconds to leave the
    answer unread, so that the server holds it."""
    with socket.create_connection(_address(url), timeout=120) as sock:
        sock.sendall(_head(case.path, len(case.body)) + case.body)
        if read_after:
            time.sleep(read_after)
        received = b""
        while chunk := sock.recv(1 << 20):
            received += chunk
    return int(received.split(b" ", 2)[1])


@contextmanager
def held_uploads(url: str, cases: list[Case], count: int) -> Iterator[None]:
    """`count` connections each holding an upload one byte short of its declared length."""
    socks = []
    try:
        for index in range(count):
            case = cases[index % len(cases)]
            sock = socket.create_connection(_address(url), timeout=120)
            socks.append(sock)
            sock.sendall(_head(case.path, len(case.body)) + case.body[:-1])
        time.sleep(0.5)  # the server has read what was sent
        yield
    finally:
        for sock in socks:
            sock.close()


def worker_pid(arbiter: int) -> int:
    (worker,) = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return int(worker)


def _status_kb(pid: int, field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


def _private_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return sum(int(kb) for kb in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", text, re.M))


def container_mib(arbiter: int) -> dict[str, float]:
    """`peak`: the worker's peak resident set plus the arbiter's private pages (the pages the
    two share are in the worker's set); `now`: the same with the worker's current set."""
    worker = worker_pid(arbiter)
    arbiter_private = _private_kb(arbiter)
    return {
        "peak": (_status_kb(worker, "VmHWM") + arbiter_private) / 1024,
        "now": (_status_kb(worker, "VmRSS") + arbiter_private) / 1024,
    }


WRK_SCRIPT = """
wrk.method = "POST"
local file = io.open("{body}", "rb")
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local expected = {{{statuses}}}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if not expected[status] then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("bad=%d\\n", total))
end
"""


def _wrk(url: str, case: Case, concurrency: int, seconds: float, scratch: Path) -> str:
    """What went wrong with `case` sent by `concurrency` connections for `seconds`: "" if
    nothing (every answer of an expected status, no socket error)."""
    body = scratch / "body.json"
    body.write_bytes(case.body)
    script = scratch / "memory.lua"
    statuses = ", ".join(f"[{status}] = true" for status in case.statuses)
    script.write_text(WRK_SCRIPT.format(body=body, statuses=statuses))
    command = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s", "-s", str(script), url + case.path]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    problems = [line.strip() for line in out.splitlines() if "Socket errors" in line]
    if "bad=0" not in out:
        problems.append(re.search(r"bad=\d+", out).group(0) + " answers of another status")
    return "; ".join(problems)


def measure(
    url: str, arbiter: int, cases: list[Case], concurrency: int, *, seconds: float, scratch: Path
) -> dict:
    """The container's memory before and after the worst load; what went wrong, by case."""
    wrong: list[tuple[str, object]] = []

    def check(case: Case, read_after: float = 0) -> None:
        status = send(url, case, read_after=read_after)
        if status not in case.statuses:
            wrong.append((case.name, status))

    for case in cases:  # the model loads; every path is warm; each case answers as it must
        check(case)
    before = container_mib(arbiter)
    # Every connection sending its next body as soon as it is answered (as wrk does, and an
    # attacker would): the bodies arrive together, the rows wait for the model together.
    for case in cases:
        if case.together:
            problems = _wrk(url, case, concurrency, seconds, scratch)
            if problems:
                wrong.append((case.name, problems))
            _drained(url)
    peaks = {"together": container_mib(arbiter)["peak"]}
    with held_uploads(url, cases, concurrency - 1):
        # Each case from the one connection left, while all the others hold an upload.
        for case in cases:
            check(case)
    peaks["held uploads"] = container_mib(arbiter)["peak"]
    # The longest answers, left unread for a while by every connection.
    longest = [case for case in cases if case.name == "v2: the longest id"]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda case: check(case, 1.0), longest * concurrency))
    after = container_mib(arbiter)
    peaks["unread answers"] = after["peak"]
    return {"before": before, "after": after, "peaks": peaks, "wrong": wrong}


def _drained(url: str) -> None:
    """Returns once the server has answered what wrk left it: the bodies it had read are still
    parsed when their connections are gone, and the event loop answers the probe after them."""
    with socket.create_connection(_address(url), timeout=300) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: memory\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass


def main() -> None:
    """The table `function.capacity` is fitted to: the peak at each concurrency and body limit."""
    import tempfile

    from tests.helpers import serve
    from training.train import FEATURE_NAMES, export, train, write_model

    scratch = Path(tempfile.mkdtemp())
    trained = train()
    model = scratch / "model.onnx"
    write_model(model, export(trained), trained)
    print("| concurrency | MAX_BODY_BYTES | idle (MiB) | peak (MiB) | by phase (MiB) |")
    print("|---:|---:|---:|---:|---|")
    for body in (256 * 1024, MIB, 2 * MIB):
        for concurrency in (1, 40, 80):
            env = {"MODEL_URI": str(model), "MAX_BODY_BYTES": str(body)}
            with serve(env, scratch / f"server-{body}-{concurrency}.log") as server:
                cases = worst_cases(body, "iris", list(FEATURE_NAMES), ["label"], 1000)
                figures = measure(
                    server.url, server.process.pid, cases, concurrency, seconds=5, scratch=scratch
                )
            assert not figures["wrong"], figures["wrong"]
            phases = ", ".join(f"{name} {peak:.0f}" for name, peak in figures["peaks"].items())
            print(f"| {concurrency} | {body} | {figures['before']['now']:.0f} | "
                  f"{figures['after']['peak']:.0f} | {phases} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
