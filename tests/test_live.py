"""`make endpoint` and `make verify`: the real google-cloud-compute client (REST) against a local
HTTP server that answers the Compute API's calls with JSON of the API's shape."""

import os
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials

import ops
from secure_endpoint.armor import Rule
from secure_endpoint.plan import ADDRESS_NAME, BACKEND_NAME, POLICY_NAME, certificate_name, plan_rules
from secure_endpoint.settings import EndpointSettings
from tests.helpers import ROOT, free_port
from tests.infra import BASE_ENV

API = "/compute/v1/projects/p/global"


def rule_json(rule: Rule) -> dict:
    if rule.expression is not None:
        match = {"expr": {"expression": rule.expression}}
    else:
        match = {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": list(rule.src_ip_ranges)}}
    return {"kind": "compute#securityPolicyRule", "priority": rule.priority, "action": rule.action,
            "description": rule.description, "preview": rule.preview, "match": match}  # fmt: skip


def policy_json(rules, *, adaptive=True) -> dict:
    return {
        "kind": "compute#securityPolicy",
        "name": POLICY_NAME,
        "type": "CLOUD_ARMOR",
        "fingerprint": "abc=",
        "rules": [rule_json(rule) for rule in rules],
        "adaptiveProtectionConfig": {"layer7DdosDefenseConfig": {"enable": adaptive}},
    }


def backend_json(policy=f"https://www.googleapis.com/compute/v1/projects/p/global/securityPolicies/{POLICY_NAME}"):
    body = {"kind": "compute#backendService", "name": BACKEND_NAME, "loadBalancingScheme": "EXTERNAL_MANAGED"}
    if policy:
        body["securityPolicy"] = policy
    return body


@pytest.fixture
def env(monkeypatch):
    def set_env(**extra):
        for name, value in {**BASE_ENV, **extra}.items():
            monkeypatch.setenv(name, value)
        return EndpointSettings.from_env({**BASE_ENV, **extra})

    return set_env


@pytest.fixture
def compute(httpserver):
    """Serves the Compute API paths; `compute(policy=..., backend=...)` sets what they answer."""

    def serve(*, policy=None, backend=None, address=None, certificate=None, policy_status=200):
        if policy is not None or policy_status != 200:
            body = policy if policy_status == 200 else {"error": {"code": policy_status, "message": "denied or missing", "errors": []}}
            httpserver.expect_request(f"{API}/securityPolicies/{POLICY_NAME}").respond_with_json(body, status=policy_status)
        if backend is not None:
            httpserver.expect_request(f"{API}/backendServices/{BACKEND_NAME}").respond_with_json(backend)
        if address is not None:
            httpserver.expect_request(f"{API}/addresses/{ADDRESS_NAME}").respond_with_json(
                {"kind": "compute#address", "name": ADDRESS_NAME, "address": address}
            )
        if certificate is not None:
            httpserver.expect_request(f"{API}/sslCertificates/{certificate['name']}").respond_with_json(certificate)
        endpoint = httpserver.url_for("").rstrip("/")
        return lambda project: ops.Live(project, credentials=AnonymousCredentials(), api_endpoint=endpoint)

    return serve


def run(command, factory):
    return ops.main([command], live_factory=factory)


def test_verify_in_sync_exits_0(env, compute, capsys):
    settings = env(ALLOWED_IP_RANGES="203.0.113.4, 2001:db8::/32")
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())

    assert run("verify", factory) == 0
    assert f"in sync: the live policy {POLICY_NAME}" in capsys.readouterr().out


def test_verify_reports_an_address_added_by_hand(env, compute, capsys):
    rules = plan_rules(env())
    rules.append(Rule(priority=1500, action="allow", description="someone's laptop", src_ip_ranges=("198.51.100.7/32",)))
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "198.51.100.7/32 is allowed by the live policy but not by the code" in out
    assert "differs from the code in 1 ways" in out


def test_verify_reports_a_range_removed_by_hand(env, compute, capsys):
    settings = env(ALLOWED_IP_RANGES="203.0.113.4 198.51.100.0/24")
    rules = [r if not r.src_ip_ranges or r.src_ip_ranges == ("*",) else Rule(**{**r.__dict__, "src_ip_ranges": ("203.0.113.4/32",)})
             for r in plan_rules(settings)]  # fmt: skip
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    assert "198.51.100.0/24 is allowed by the code but not by the live policy" in capsys.readouterr().out


def test_verify_reports_a_default_rule_that_allows(env, compute, capsys):
    rules = [r if r.priority != 2147483647 else Rule(**{**r.__dict__, "action": "allow"}) for r in plan_rules(env())]
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    assert "the default rule is allow on ['*']; expected deny(403) on ['*']" in capsys.readouterr().out


def test_verify_reports_adaptive_protection_off_and_a_detached_policy(env, compute, capsys):
    factory = compute(policy=policy_json(plan_rules(env()), adaptive=False), backend=backend_json(policy=None))

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "adaptive protection's layer-7 DDoS defense is off" in out
    assert f"the backend service {BACKEND_NAME} is not guarded by {POLICY_NAME}: its security policy is none" in out


def test_verify_reports_rules_missing_or_added(env, compute, capsys):
    rules = [r for r in plan_rules(env()) if r.priority != 100]
    rules.append(Rule(priority=500, action="deny(404)", description="manual block", src_ip_ranges=("192.0.2.0/24",)))
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "rule 100 (WAF: sqli-v33-stable) is in the code but not live" in out
    assert "rule 500 (deny(404): manual block) is live but not in the code" in out


@pytest.mark.parametrize("status, words", [(404, "does not exist in project p: run `make deploy` first"), (403, "permission denied")])
def test_verify_explains_a_missing_or_forbidden_policy(env, compute, capsys, status, words):
    env()
    factory = compute(policy_status=status)

    assert run("verify", factory) == 2
    assert words in capsys.readouterr().err


def test_endpoint_prints_the_url_and_ready_curls(env, compute, capsys):
    env()
    factory = compute(address="34.117.1.2")

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert "endpoint: http://34.117.1.2/inference/" in out
    assert "one row:  curl -X POST http://34.117.1.2/inference/ -H 'Content-Type: application/json' -d '{\"sepal_length\": 5.1" in out
    assert "batch:    curl -X POST http://34.117.1.2/inference/" in out and '"instances"' in out


def test_endpoint_with_a_domain_shows_https_and_the_certificate_status(env, compute, capsys):
    env(DOMAIN="api.example.com")
    name = certificate_name("api.example.com")
    certificate = {"kind": "compute#sslCertificate", "name": name, "type": "MANAGED",
                   "managed": {"status": "PROVISIONING", "domainStatus": {"api.example.com": "FAILED_NOT_VISIBLE"}}}  # fmt: skip
    factory = compute(address="34.117.1.2", certificate=certificate)

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert "endpoint: https://api.example.com/inference/" in out
    assert f"certificate {name}: PROVISIONING (api.example.com: FAILED_NOT_VISIBLE)" in out
    assert "point api.example.com's A record at 34.117.1.2" in out


def test_missing_credentials_give_one_sentence(tmp_path):
    closed = f"127.0.0.1:{free_port()}"  # keeps google-auth's metadata-server probe on loopback
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path),
           "GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed, **BASE_ENV}  # fmt: skip

    result = subprocess.run(
        [sys.executable, str(ROOT / "cdktf" / "ops.py"), "verify"], env=env, capture_output=True, text=True, timeout=60
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stderr.strip() == "error: no Google credentials found: run `gcloud auth application-default login`"
