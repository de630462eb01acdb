"""The probes and alerts ALERT_EMAIL declares, compared with what Cloud Monitoring holds.

google-cloud-monitoring has gRPC transports only for these; its REST API is read here through an
authorized session instead, as Live reads Compute (tests serve it from a local fake).
"""

from collections.abc import Callable

from secure_endpoint.monitoring_plan import (
    DENIED_STATUS, PROBE_PATH, alert_name, alert_titles, probe_keys, probe_name,
)  # fmt: skip
from secure_endpoint.plan import CANARY, plan_arms
from secure_endpoint.settings import EndpointSettings

MONITORING_API = "https://monitoring.googleapis.com"
MONITORING_ROLE = "roles/monitoring.viewer"

# (kind, field) -> every item of the project's list: `uptimeCheckConfigs`, `alertPolicies`.
Lister = Callable[[str], list[dict]]


def monitoring_drift(list_all: Lister, settings: EndpointSettings) -> list[str]:
    """Each declared probe present, POSTing to the endpoint and accepting 403 only; each declared
    alert policy present and enabled. Found by display name: both are named by the code alone."""
    checks = {check.get("displayName"): check for check in list_all("uptimeCheckConfigs")}
    policies = {policy.get("displayName"): policy for policy in list_all("alertPolicies")}
    differences = []
    for key in probe_keys(settings):
        name = probe_name(key)
        check = checks.get(name)
        if check is None:
            differences.append(f"the uptime check {name!r} the code declares is missing: run `make deploy`")
            continue
        http = check.get("httpCheck", {})
        accepted = http.get("acceptedResponseStatusCodes", [])
        if accepted != [{"statusValue": DENIED_STATUS}]:
            differences.append(
                f"the uptime check {name!r} accepts {_codes(accepted)}, the code {DENIED_STATUS} only: "
                "a probe that accepts anything else can pass through an open door"
            )
        method, path = http.get("requestMethod"), http.get("path")
        if (method, path) != ("POST", PROBE_PATH):
            differences.append(
                f"the uptime check {name!r} sends {method} {path}, the code POST {PROBE_PATH}"
            )
    canary = any(arm.role == CANARY for arm in plan_arms(settings))
    for title in alert_titles(settings, canary=canary).values():
        name = alert_name(title)
        policy = policies.get(name)
        if policy is None:
            differences.append(f"the alert policy {name!r} the code declares is missing: run `make deploy`")
        elif policy.get("enabled") is False:
            differences.append(f"the alert policy {name!r} is disabled: nobody is told when it fires")
    return differences


def _codes(accepted: list[dict]) -> str:
    words = [
        str(code["statusValue"]) if "statusValue" in code else code.get("statusClass", "?") for code in accepted
    ]
    return ", ".join(words) or "the default (any 2xx)"
