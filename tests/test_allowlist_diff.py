"""`make allowlist-diff`: the allowlist change against BASE or the live policy, replayed over log exports."""

import gzip
import ipaddress
import json
import subprocess
import sys
import time

import allowlist_ops
import pytest
from google.auth.credentials import AnonymousCredentials
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from secure_endpoint.allowlist_diff import Cells
from secure_endpoint.armor import DEFAULT_RULE_PRIORITY, Rule, decide
from secure_endpoint.live import Live
from secure_endpoint.log_export import Request
from secure_endpoint.plan import POLICY_NAME, plan_rules
from secure_endpoint.settings import EndpointSettings

from tests.helpers import ROOT
from tests.test_live import API, policy_json

BASE = {"PROJECT_ID": "p", "MODEL_URI": "gs://demo-models/model.onnx", "IPV6": "true"}
OLD = [("198.51.100.0/24", "alice", "nightly batch"), ("203.0.113.0/25", "bob", "partner API"), ("2001:db8:1::/48", "carol", "v6 office")]
NEW = [("203.0.113.0/25", "bob", "partner API"), ("192.0.2.0/28", "dave", "new office"), ("2001:db8:1::/48", "carol", "v6 office")]


def toml(entries) -> str:
    return "".join(f'[[entry]]\nrange = "{r}"\nowner = "{o}"\nreason = "{why}"\n' for r, o, why in entries)


@pytest.fixture
def files(tmp_path):
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(toml(OLD))
    new.write_text(toml(NEW))
    return old, new


def run_diff(new, *, base=None, logs=None, live_factory=None):
    return allowlist_ops.diff(base, logs, live_factory, environ={**BASE, "ALLOWLIST_FILE": str(new)})


def log_entry(ip: str, timestamp: str, status: int = 200) -> dict:
    """An entry as the load balancer writes it (fields trimmed to the usual ones)."""
    return {
        "httpRequest": {"requestMethod": "POST", "requestUrl": "http://203.0.113.10/inference/", "status": status,
                        "remoteIp": ip, "userAgent": "curl/8.5.0", "latency": "0.012s"},
        "insertId": "abc", "jsonPayload": {"@type": "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry",
                                           "enforcedSecurityPolicy": {"name": POLICY_NAME, "outcome": "ACCEPT"}},
        "logName": "projects/p/logs/requests", "resource": {"type": "http_load_balancer"},
        "severity": "INFO", "timestamp": timestamp,
    }  # fmt: skip


TRAFFIC = [
    ("198.51.100.7", "2026-12-01T10:00:00Z"), ("198.51.100.7", "2026-12-02T09:30:00Z"), ("198.51.100.7", "2026-12-01T11:00:00Z"),
    ("192.0.2.3", "2026-12-02T08:00:00Z"),
    ("203.0.113.4", "2026-12-02T08:00:00Z"), ("203.0.113.4", "2026-12-02T08:01:00Z"),
    ("2001:db8:1::5", "2026-12-02T07:00:00Z"), ("2001:db8:2::9", "2026-12-02T07:00:00Z"),
]  # fmt: skip


def test_without_logs_the_ranges_each_side_lets_in_are_compared(files, capsys):
    old, new = files
    assert run_diff(new, base=old) == 1

    out = capsys.readouterr().out
    assert f"before: BASE {old}\nafter:  the working tree's {new}" in out
    assert "ranges no longer allowed: 198.51.100.0/24\n  198.51.100.0/24: rule 1000 (allowlist 1/1: alice, bob, carol); owner alice (198.51.100.0/24: nightly batch)" in out
    assert "ranges newly allowed: 192.0.2.0/28\n  192.0.2.0/28: rule 1000 (allowlist 1/1: bob, dave, carol); owner dave" in out


def test_the_same_allowlist_is_no_change(files, capsys):
    _, new = files
    assert run_diff(new, base=new) == 0
    assert "ranges no longer allowed: none\nranges newly allowed: none" in capsys.readouterr().out


def write_array(path, entries, extra=()):
    """The layout `gcloud logging read --format=json` writes: an indented array."""
    body = ",\n".join([json.dumps(e, indent=2) for e in entries] + list(extra))
    path.write_text(f"[\n{body}\n]\n")
    return path


@pytest.mark.parametrize("shape", ["array", "lines", "gzip lines", "gzip array"])
def test_logs_replay_every_client_through_both_policies(files, tmp_path, capsys, shape):
    old, new = files
    entries = [log_entry(ip, ts) for ip, ts in TRAFFIC] + [{"textPayload": "no request"}]
    bad = ['{"httpRequest": {"remoteIp": "not-an-ip"}}', '{"unterminated": tru}', '"a string"']
    if shape.endswith("array"):
        logs = write_array(tmp_path / "export.json", entries[:3], bad + [json.dumps(e) for e in entries[3:]])
    else:
        logs = tmp_path / "export.jsonl"
        logs.write_text("\n".join([json.dumps(e) for e in entries[:3]] + bad + [json.dumps(e) for e in entries[3:]]) + "\n")
    if shape.startswith("gzip"):
        logs = logs.with_suffix(".gz")
        logs.write_bytes(gzip.compress((tmp_path / ("export.json" if shape.endswith("array") else "export.jsonl")).read_bytes()))

    assert run_diff(new, base=old, logs=logs) == 1

    out = capsys.readouterr().out
    assert f"replayed 12 log entries of {logs}: 8 requests; 3 malformed entries skipped, 1 without httpRequest.remoteIp" in out
    assert "malformed " in out and "expected httpRequest.remoteIp to be an IPv4 or IPv6 address, got 'not-an-ip'" in out
    cut, admitted = out.split("cut off (answered before, refused after): ")[1].split("newly admitted")
    assert cut.startswith("1 client, 3 requests\n")
    assert "rule 1000 (allowlist 1/1: alice, bob, carol) -> rule 2147483647 (default: deny everyone else): 1 client" in cut
    assert "198.51.100.7  3 requests, last seen 2026-12-02T09:30:00Z; owner alice (198.51.100.0/24: nightly batch)" in cut
    assert admitted.startswith(" (refused before, answered after): 1 client, 1 request\n")
    assert "192.0.2.3  1 request, last seen 2026-12-02T08:00:00Z; owner dave (192.0.2.0/28: new office)" in admitted
    assert "unchanged: 4 requests" in out  # 203.0.113.4 twice, both IPv6 clients
    assert "2001:db8" not in cut + admitted.split("unchanged")[0]


def test_logs_where_no_clients_verdict_changes_exit_0(files, tmp_path, capsys):
    old, new = files
    logs = write_array(tmp_path / "export.json", [log_entry("203.0.113.4", "2026-12-02T08:00:00Z"), log_entry("2001:db8:1::5", "t")])
    assert run_diff(new, base=old, logs=logs) == 0
    out = capsys.readouterr().out
    assert "cut off (answered before, refused after): 0 clients, 0 requests" in out and "unchanged: 2 requests" in out


def test_an_ipv6_client_cut_off_is_reported(files, tmp_path, capsys):
    old, new = files
    new.write_text(toml(NEW[:2]))
    logs = write_array(tmp_path / "export.json", [log_entry("2001:DB8:1:0::5", "2026-12-02T08:00:00Z")])
    assert run_diff(new, base=old, logs=logs) == 1
    assert "2001:db8:1::5  1 request, last seen 2026-12-02T08:00:00Z; owner carol" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda old, new, tmp: {"logs": tmp / "missing.json"}, "LOGS: "),
        (lambda old, new, tmp: {"base": tmp / "missing.toml"}, "BASE: ALLOWLIST_FILE: "),
        (lambda old, new, tmp: (new.write_text(toml([("10.0.0.0/8", "x", "y")])), {})[1], "ALLOWLIST_FILE: "),
        (lambda old, new, tmp: (tmp.joinpath("t.gz").write_bytes(gzip.compress(b"[{}]")[:12]), {"logs": tmp / "t.gz"})[1],
         "cannot be read to its end"),
    ],
    ids=["no logs file", "no base file", "bad settings", "truncated gzip"],
)  # fmt: skip
def test_errors_exit_2_in_one_line(files, tmp_path, capsys, change, words):
    old, new = files
    options = {"base": old, **change(old, new, tmp_path)}
    assert run_diff(new, **options) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_the_live_policy_is_the_default_base(files, httpserver, tmp_path, capsys):
    old, new = files
    deployed = EndpointSettings.from_env({**BASE, "ALLOWLIST_FILE": str(old)})
    httpserver.expect_request(f"{API}/securityPolicies/{POLICY_NAME}").respond_with_json(policy_json(plan_rules(deployed)))
    factory = lambda project: Live(project, credentials=AnonymousCredentials(), api_endpoint=httpserver.url_for("").rstrip("/"))
    logs = write_array(tmp_path / "export.json", [log_entry("198.51.100.7", "2026-12-02T08:00:00Z")])

    assert run_diff(new, logs=logs, live_factory=factory) == 1

    out = capsys.readouterr().out
    assert f"before: the live policy {POLICY_NAME} of project p" in out
    assert "rule 1000 (allowlist 1/1: alice, bob, carol) -> rule 2147483647 (default: deny everyone else): 1 client" in out


def test_a_missing_live_policy_exits_2(files, httpserver, capsys):
    _, new = files
    httpserver.expect_request(f"{API}/securityPolicies/{POLICY_NAME}").respond_with_json({"error": {"code": 404, "message": "not found"}}, status=404)
    factory = lambda project: Live(project, credentials=AnonymousCredentials(), api_endpoint=httpserver.url_for("").rstrip("/"))
    assert run_diff(new, live_factory=factory) == 2
    assert capsys.readouterr().err.startswith("error: ")


RULES = (
    Rule(100, "deny(403)", expression="evaluatePreconfiguredWaf('sqli-v33-stable')"),
    Rule(900, "deny(403)", src_ip_ranges=("203.0.113.64/26", "2001:db8:1:8000::/49")),
    Rule(1000, "allow", src_ip_ranges=("203.0.113.0/24", "198.51.100.128/25", "2001:db8:1::/48")),
    Rule(1010, "allow", src_ip_ranges=("198.51.100.0/24",), preview=True),
    Rule(1020, "throttle", src_ip_ranges=("192.0.2.0/28", "::ffff:192.0.2.0/124")),
    Rule(DEFAULT_RULE_PRIORITY, "deny(403)", src_ip_ranges=("*",)),
)
ADDRESSES = st.one_of(
    st.integers(int(ipaddress.ip_address("192.0.2.0")), int(ipaddress.ip_address("203.0.113.255"))).map(ipaddress.IPv4Address),
    st.integers(int(ipaddress.ip_address("2001:db8:0:ffff::")), int(ipaddress.ip_address("2001:db8:2::"))).map(ipaddress.IPv6Address),
    st.integers(0, 255).map(lambda n: ipaddress.IPv6Address(f"::ffff:192.0.2.{n}")),
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.lists(ADDRESSES, min_size=1, max_size=20))
def test_a_cells_decision_is_check_ips_for_every_address(addresses):
    cells = Cells(RULES)
    for ip in addresses:
        assert cells.rule(Request(str(ip), "", ip.version, int(ip))) == decide(RULES, str(ip)).rule


# A million entries, 200,000 distinct clients (more than the verdict cache holds), 256 of them cut
# off and 16 newly admitted. Peak RSS of the whole process, measured by the process itself.
MILLION = 1_000_000
MEMORY_BOUND_MB = 100
# VmHWM, the peak RSS of this program's own memory: getrusage's ru_maxrss would also count the
# pytest process the child was forked from, which ru_maxrss carries across execve.
MEASURED = """
import sys
sys.path.insert(0, "cdktf")
import allowlist_ops
code = allowlist_ops.main(sys.argv[1:])
status = open("/proc/self/status").read()
print(f"peak_rss_kb={status.split('VmHWM:')[1].split()[0]}", file=sys.stderr)
sys.exit(code)
"""


def generate_export(path, count: int) -> None:
    template = json.dumps(log_entry("IP", "TS")).replace('"IP"', '"{ip}"').replace('"TS"', '"{ts}"')
    template = template.replace("{", "{{").replace("}", "}}").replace("{{ip}}", "{ip}").replace("{{ts}}", "{ts}")
    with path.open("w") as stream:
        stream.write("[\n")
        for i in range(count):
            client = i % 200_000
            if client < 512:
                ip = f"198.51.100.{client % 256}" if client < 256 else f"2001:db8:1::{client:x}"
            elif client < 528:
                ip = f"192.0.2.{client % 16}"
            else:
                ip = f"2001:db8:1:{client >> 16:x}:{client & 0xFFFF:x}::1" if client % 2 else f"203.0.113.{client % 128}"
            stream.write(("" if i == 0 else ",\n") + template.format(ip=ip, ts=f"2026-12-02T{i % 24:02d}:00:00Z"))
        stream.write("\n]\n")


def test_a_million_entry_export_streams_in_bounded_memory(files, tmp_path):
    old, new = files
    logs = tmp_path / "million.json"
    generate_export(logs, MILLION)
    env = {"PATH": "/usr/bin:/bin", **BASE, "ALLOWLIST_FILE": str(new)}

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, "diff", "--base", str(old), "--logs", str(logs)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    assert f"replayed {MILLION:,} log entries" in result.stdout and "0 malformed entries skipped" in result.stdout
    assert "cut off (answered before, refused after): 256 clients" in result.stdout
    assert "newly admitted (refused before, answered after): 16 clients" in result.stdout
    peak_mb = int(result.stderr.split("peak_rss_kb=")[1]) / 1024
    print(f"\n{MILLION:,} entries, {logs.stat().st_size / 2**20:,.0f} MiB: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < MEMORY_BOUND_MB
