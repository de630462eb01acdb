"""The monitoring settings: refused clearly when out of range, and nothing changes while ALERT_EMAIL is unset."""

import pytest

from secure_endpoint.settings import EndpointSettings, SettingsError
from tests.infra import BASE_ENV

MONITORING_TYPES = (
    "google_monitoring_notification_channel",
    "google_monitoring_uptime_check_config",
    "google_monitoring_alert_policy",
    "google_monitoring_dashboard",
    "google_logging_metric",
)


def refusal(**env: str) -> str:
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, **env})
    return str(raised.value)


def test_defaults_a_user_starting_small_would_accept():
    settings = EndpointSettings.from_env(BASE_ENV)

    assert settings.alert_email is None
    assert (settings.alert_5xx_ratio, settings.alert_p95_ms, settings.alert_denials_per_minute) == (0.05, 2000, 100)
    assert settings.lb_log_sample_rate == 1.0


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("ALERT_EMAIL", "oncall", "expected an email address such as oncall@example.com, got 'oncall'"),
        ("ALERT_EMAIL", "a@${file(\"/etc/passwd\")}.com", "expected an email address"),
        ("ALERT_EMAIL", "on%{call}@example.com", "expected an email address"),
        ("ALERT_EMAIL", "oncall@Example.COM", "expected an email address"),
        ("ALERT_5XX_RATIO", "0", "expected a fraction above 0 and at most 1, such as 0.05, got '0'"),
        ("ALERT_5XX_RATIO", "5%", "expected a fraction from 0 to 1"),
        ("ALERT_5XX_RATIO", "1.5", "expected a fraction from 0 to 1"),
        ("ALERT_P95_MS", "0", "expected a whole number from 1 to 300000, got '0'"),
        ("ALERT_P95_MS", "2s", "expected a whole number from 1 to 300000, got '2s'"),
        ("ALERT_P95_MS", "300001", "expected a whole number from 1 to 300000"),
        ("ALERT_DENIALS_PER_MINUTE", "0", "expected a whole number of at least 1, got '0'"),
        ("LB_LOG_SAMPLE_RATE", "-0.1", "expected a fraction from 0 to 1, such as 0.01, got '-0.1'"),
        ("LB_LOG_SAMPLE_RATE", "nan", "expected a fraction from 0 to 1"),
        ("LB_LOG_SAMPLE_RATE", "100", "expected a fraction from 0 to 1"),
    ],
)
def test_an_out_of_range_monitoring_setting_is_refused_by_name(name, raw, expected):
    message = refusal(**{name: raw})

    assert message.startswith(f"{name}: ")
    assert expected in message


def test_every_bad_monitoring_setting_is_named_in_one_run():
    lines = refusal(ALERT_EMAIL="x", ALERT_5XX_RATIO="2", ALERT_P95_MS="-1", LB_LOG_SAMPLE_RATE="1.1").splitlines()

    assert [line.split(":")[0] for line in lines] == [
        "LB_LOG_SAMPLE_RATE", "ALERT_EMAIL", "ALERT_5XX_RATIO", "ALERT_P95_MS",
    ]  # fmt: skip


def test_alerts_are_refused_with_the_internal_load_balancer():
    message = refusal(
        ALERT_EMAIL="oncall@example.com", EXPOSURE="internal", NETWORK="vpc", SUBNET="sub",
        ALLOWED_IP_RANGES="10.1.2.0/24",
    )  # fmt: skip

    assert message.startswith("ALERT_EMAIL: expected only with the public load balancer, got 'oncall@example.com'")


def test_thresholds_without_alert_email_change_nothing_in_the_stack(synth):
    plain = synth()
    tuned = synth(ALERT_5XX_RATIO="0.2", ALERT_P95_MS="900", ALERT_DENIALS_PER_MINUTE="7", LB_LOG_SAMPLE_RATE="1.0")

    assert tuned.json == plain.json
    assert not any(plain.resources(kind) for kind in MONITORING_TYPES)


def test_the_default_log_sample_rate_logs_every_request(synth):
    (backend,) = synth().resources("google_compute_backend_service").values()

    assert backend["log_config"] == {"enable": True, "sample_rate": 1}


def test_a_lower_log_sample_rate_reaches_every_backend_service(synth):
    stack = synth(
        LB_LOG_SAMPLE_RATE="0.25", CANARY_MODEL_URI="gs://demo-models/canary.onnx", CANARY_PERCENT="10"
    )
    backends = stack.resources("google_compute_backend_service").values()

    assert [b["log_config"] for b in backends] == [{"enable": True, "sample_rate": 0.25}] * 2


@pytest.mark.parametrize(("env", "enabled"), [({}, False), ({"ALERT_EMAIL": "oncall@example.com"}, True)])
def test_the_bootstrap_enables_the_monitoring_api_only_with_alert_email(env, enabled):
    import json

    from cdktn import App, Testing
    from secure_endpoint.bootstrap import BootstrapStack
    from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings

    settings = BootstrapSettings.from_env({"PROJECT_ID": "p", "MODEL_BUCKET": "p-models", **env})
    stack = json.loads(Testing.synth(BootstrapStack(App(), BOOTSTRAP_STACK, settings=settings)))
    services = {s["service"] for s in stack["resource"]["google_project_service"].values()}

    assert ("monitoring.googleapis.com" in services) is enabled
    assert "logging.googleapis.com" in services  # the log-based metric's API, always enabled


def test_the_internal_load_balancer_samples_its_logs_at_the_same_rate(synth):
    stack = synth(
        EXPOSURE="internal", NETWORK="vpc", SUBNET="sub", ALLOWED_IP_RANGES="10.1.2.0/24", LB_LOG_SAMPLE_RATE="0.5"
    )
    (backend,) = stack.resources("google_compute_region_backend_service").values()

    assert backend["log_config"] == {"enable": True, "sample_rate": 0.5}
