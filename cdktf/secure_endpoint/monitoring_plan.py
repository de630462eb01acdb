"""What ALERT_EMAIL declares, by name: read by the stack (secure_endpoint.monitoring) and by
`make verify` (secure_endpoint.live_monitoring), without loading the provider's bindings."""

from secure_endpoint.plan import NAME
from secure_endpoint.settings import EndpointSettings

# Cloud Armor's deny answer: the only status a probe from outside the allowlist may get.
DENIED_STATUS = 403
# Three uptime-check regions, five checkers (USA has three): the API wants at least three.
CHECKER_REGIONS = ("USA", "EUROPE", "ASIA_PACIFIC")
PROBE_PATH = "/inference/"


def probe_name(key: str) -> str:
    return f"{NAME} denies outsiders ({key})"


def probe_keys(settings: EndpointSettings) -> list[str]:
    """The probes' keys: what each one reaches (see Monitoring._probes)."""
    return ["https-domain", "https-address"] if settings.domain else ["http-address"]


def alert_titles(settings: EndpointSettings, *, canary: bool) -> dict[str, str]:
    """Each alert policy's title by key; its display name is `inference: <title>`."""
    titles = {
        "open-door": "OPEN DOOR: a probe from outside the allowlist got an answer",
        "probe-failing": "Probe not denied: the load balancer did not answer 403",
        "5xx-ratio": f"5xx above {settings.alert_5xx_ratio:g} of requests",
        "p95-latency": f"p95 latency above {settings.alert_p95_ms} ms",
        "denials": f"Cloud Armor denies more than {settings.alert_denials_per_minute} requests a minute",
        "model-load": "The service failed to load its model",
    }
    if canary:
        titles["canary-5xx"] = "The canary answers 5xx more often than the stable model"
    return titles


def alert_name(title: str) -> str:
    return f"{NAME}: {title}"
