"""`make verify` with ALERT_EMAIL: the probes and alerts the code declares, read from a local
server speaking Cloud Monitoring's v3 REST API (lists in pages, as the real one)."""

import json

import pytest
from werkzeug import Response

from secure_endpoint.monitoring_plan import PROBE_PATH, alert_name, alert_titles, probe_keys, probe_name
from secure_endpoint.plan import plan_rules
from tests.test_live import backend_json, compute, env, policy_json, run  # noqa: F401 (fixtures)

MONITORING = "/v3/projects/p"
ALERTS = {"ALERT_EMAIL": "oncall@example.com"}


def check_json(key: str, *, accepted=({"statusValue": 403},), method="POST", path=PROBE_PATH) -> dict:
    return {
        "name": f"projects/p/uptimeCheckConfigs/{key}-1a2b",
        "displayName": probe_name(key),
        "httpCheck": {"requestMethod": method, "path": path, "acceptedResponseStatusCodes": list(accepted)},
    }


def policy_json_named(title: str, *, enabled=True) -> dict:
    return {"name": f"projects/p/alertPolicies/{abs(hash(title))}", "displayName": alert_name(title), "enabled": enabled}


def serve_monitoring(httpserver, checks: list[dict], policies: list[dict], *, status=200) -> None:
    """Each list in pages of one item, so verify must follow nextPageToken to see them all."""

    def pages(field: str, items: list[dict]):
        def handler(request):
            if status != 200:
                return Response(json.dumps({"error": {"code": status, "message": "denied"}}), status=status,
                                content_type="application/json")  # fmt: skip
            index = int(request.args.get("pageToken", "0"))
            body = {field: items[index:index + 1]}
            if index + 1 < len(items):
                body["nextPageToken"] = str(index + 1)
            return Response(json.dumps(body), content_type="application/json")

        return handler

    httpserver.expect_request(f"{MONITORING}/uptimeCheckConfigs", method="GET").respond_with_handler(
        pages("uptimeCheckConfigs", checks)
    )
    httpserver.expect_request(f"{MONITORING}/alertPolicies", method="GET").respond_with_handler(
        pages("alertPolicies", policies)
    )


def deployed(settings) -> tuple[list[dict], list[dict]]:
    checks = [check_json(key) for key in probe_keys(settings)]
    policies = [policy_json_named(t) for t in alert_titles(settings, canary=False).values()]
    return checks, policies


@pytest.mark.parametrize("extra", [{}, {"DOMAIN": "api.example.com"}], ids=["http", "https"])
def test_verify_in_sync_with_the_declared_probes_and_alerts(env, compute, httpserver, capsys, extra):
    settings = env(**ALERTS, **extra)
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())
    serve_monitoring(httpserver, *deployed(settings))

    assert run("verify", factory) == 0, capsys.readouterr()


def test_verify_reports_a_probe_that_accepts_2xx_a_missing_one_and_alerts_missing_or_disabled(
    env, compute, httpserver, capsys
):
    settings = env(**ALERTS, DOMAIN="api.example.com")
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())
    titles = list(alert_titles(settings, canary=False).values())
    checks = [check_json("https-domain", accepted=({"statusValue": 403}, {"statusClass": "STATUS_CLASS_2XX"}))]
    policies = [policy_json_named(titles[0], enabled=False), *(policy_json_named(t) for t in titles[2:])]
    serve_monitoring(httpserver, checks, policies)

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert f"the uptime check {probe_name('https-domain')!r} accepts 403, STATUS_CLASS_2XX, the code 403 only" in out
    assert f"the uptime check {probe_name('https-address')!r} the code declares is missing" in out
    assert f"the alert policy {alert_name(titles[0])!r} is disabled" in out
    assert f"the alert policy {alert_name(titles[1])!r} the code declares is missing" in out


def test_verify_reports_a_probe_that_no_longer_posts_to_the_endpoint(env, compute, httpserver, capsys):
    settings = env(**ALERTS)
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())
    checks, policies = deployed(settings)
    checks[0] = check_json("http-address", method="GET", path="/")
    serve_monitoring(httpserver, checks, policies)

    assert run("verify", factory) == 1
    assert f"sends GET /, the code POST {PROBE_PATH}" in capsys.readouterr().out


def test_verify_names_the_role_when_monitoring_refuses(env, compute, httpserver, capsys):
    settings = env(**ALERTS)
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())
    serve_monitoring(httpserver, [], [], status=403)

    assert run("verify", factory) == 2
    err = capsys.readouterr().err
    assert "permission denied reading the Cloud Monitoring uptimeCheckConfigs in project p" in err
    assert "roles/monitoring.viewer" in err and err.count("\n") == 1


def test_verify_does_not_read_monitoring_without_alert_email(env, compute, httpserver, capsys):
    settings = env()
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())

    assert run("verify", factory) == 0
    assert not [r for r in httpserver.log if r[0].path.startswith("/v3/")]
