"""Watching the endpoint: outside-in probes that must be denied, alerts, and a dashboard.

Built only with ALERT_EMAIL, over the public edge (settings refuse it with EXPOSURE=internal).
Every name in a filter or a query is the attribute of the resource it names, never retyped.
"""

import base64
import json

from cdktn_provider_google.logging_metric import (
    LoggingMetric,
    LoggingMetricMetricDescriptor,
    LoggingMetricMetricDescriptorLabels,
)
from cdktn_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicy,
    MonitoringAlertPolicyAlertStrategy,
    MonitoringAlertPolicyConditions,
    MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage,
    MonitoringAlertPolicyConditionsConditionThreshold,
    MonitoringAlertPolicyConditionsConditionThresholdAggregations,
    MonitoringAlertPolicyConditionsConditionThresholdDenominatorAggregations,
    MonitoringAlertPolicyConditionsConditionThresholdTrigger,
    MonitoringAlertPolicyDocumentation,
)
from cdktn_provider_google.monitoring_dashboard import MonitoringDashboard
from cdktn_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from cdktn_provider_google.monitoring_uptime_check_config import (
    MonitoringUptimeCheckConfig,
    MonitoringUptimeCheckConfigHttpCheck,
    MonitoringUptimeCheckConfigHttpCheckAcceptedResponseStatusCodes,
    MonitoringUptimeCheckConfigMonitoredResource,
)
from constructs import Construct

from secure_endpoint.edge import ArmoredEdge
from secure_endpoint.monitoring_plan import (
    CHECKER_REGIONS, DENIED_STATUS, PROBE_PATH, alert_name, alert_titles, probe_keys, probe_name,
)  # fmt: skip
from secure_endpoint.plan import CANARY, NAME, STABLE
from secure_endpoint.serving import ServingBackend
from secure_endpoint.settings import EndpointSettings

PROBE_PERIOD = "60s"
PROBE_TIMEOUT = "10s"
JSON_CONTENT_TYPE = "application/json"
# What the service logs on a failed load (function/app.py `_load`): severity ERROR, a message
# starting so, and the kind of failure in `cause`.
LOAD_FAILURE_MESSAGE = "cannot load model"
LOAD_FAILURE_METRIC = f"{NAME}-model-load-failures"
# How much the canary's 5xx ratio may exceed the stable arm's before anyone is told.
CANARY_5XX_MARGIN = 0.01
CANARY_WINDOW = "10m"

LB_REQUESTS = "loadbalancing.googleapis.com/https/request_count"
LB_LATENCIES = "loadbalancing.googleapis.com/https/total_latencies"
ARMOR_REQUESTS = "networksecurity.googleapis.com/https/request_count"
PROBE_PASSED = "monitoring.googleapis.com/uptime_check/check_passed"
PROBE_STATUS = "monitoring.googleapis.com/uptime_check/http_status"
PROBE_LATENCY = "monitoring.googleapis.com/uptime_check/request_latency"
# The same load balancer metric as PromQL names it.
PROMQL_LB_REQUESTS = "loadbalancing_googleapis_com:https_request_count"
PROMQL_PROBE_STATUS = "monitoring_googleapis_com:uptime_check_http_status"


def _filter(*terms: str) -> str:
    return " AND ".join(terms)


class Monitoring(Construct):
    """Probes, alerts and a dashboard over the public edge, all notifying one email channel.

        uptime checks (3 regions, every minute) ─► POST /inference/ at the address (and the HTTPS
            name with DOMAIN) ─► must answer 403: the checkers are outside the allowlist
        alert policies ─► email channel (ALERT_EMAIL)
            open door: a probe got a 2xx          (CRITICAL)
            probe failing: no 403 from a checker  (CRITICAL; an open door fails the check too)
            5xx ratio, p95 latency, Cloud Armor denials, model-load failures (a log-based
            metric on the service's own error line), canary 5xx above stable (PromQL)
        dashboard ─► requests by class and backend, latency percentiles, denials, instances,
            model-load failures, probe results

    Outputs: `channel`, `probes`, `policies` (by key), `load_failures`, `dashboard`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EndpointSettings,
        edge: ArmoredEdge,
        servings: list[ServingBackend],
        request: dict,
    ):
        super().__init__(scope, id)
        self.settings = settings
        self.edge = edge
        self.servings = servings
        self.channel = MonitoringNotificationChannel(
            self, "email", type="email", display_name=f"{NAME} on-call",
            labels={"email_address": settings.alert_email},
        )  # fmt: skip
        self.probes = self._probes(settings, request)
        self.load_failures = self._load_failure_metric()
        self.policies: dict[str, MonitoringAlertPolicy] = {}
        self.titles = alert_titles(settings, canary=CANARY in edge.backends)
        self._probe_alerts()
        self._traffic_alerts(settings)
        if CANARY in edge.backends:
            self._canary_alert()
        self.dashboard = MonitoringDashboard(self, "dashboard", dashboard_json=json.dumps(self._dashboard()))

    # Probes

    def _probes(self, settings: EndpointSettings, request: dict) -> list[MonitoringUptimeCheckConfig]:
        """Without DOMAIN: http://address. With it, port 80 only redirects (no Cloud Armor there),
        so: https://DOMAIN, its certificate checked, and https://address, which proves the address
        is shut whatever name a client sends."""
        body = base64.b64encode(json.dumps(request).encode()).decode()
        address = self.edge.address.address
        targets = {"https-domain": (settings.domain, True), "https-address": (address, False),
                   "http-address": (address, None)}  # fmt: skip
        return [self._probe(key, *targets[key], body) for key in probe_keys(settings)]

    def _probe(self, key: str, host: str, validate: bool | None, body: str) -> MonitoringUptimeCheckConfig:
        tls = validate is not None
        return MonitoringUptimeCheckConfig(
            self,
            f"probe-{key}",
            display_name=probe_name(key),
            period=PROBE_PERIOD,
            timeout=PROBE_TIMEOUT,
            selected_regions=list(CHECKER_REGIONS),
            monitored_resource=MonitoringUptimeCheckConfigMonitoredResource(
                type="uptime_url", labels={"project_id": self.settings.project_id, "host": host}
            ),
            http_check=MonitoringUptimeCheckConfigHttpCheck(
                request_method="POST",
                path=PROBE_PATH,
                port=443 if tls else 80,
                use_ssl=tls,
                validate_ssl=bool(validate),
                body=body,
                content_type="USER_PROVIDED",
                custom_content_type=JSON_CONTENT_TYPE,
                # 403 and nothing else: a 2xx is an open door, never a pass.
                accepted_response_status_codes=[
                    MonitoringUptimeCheckConfigHttpCheckAcceptedResponseStatusCodes(status_value=DENIED_STATUS)
                ],
            ),
        )

    def _probe_alerts(self) -> None:
        ids = ", ".join(f'"{probe.uptime_check_id}"' for probe in self.probes)
        probes = f"metric.label.check_id = one_of({ids})"
        # Check ids are letters, digits and hyphens: safe in a regular expression.
        regex_ids = "|".join(str(probe.uptime_check_id) for probe in self.probes)
        self._alert(
            "open-door",
            f"An uptime check from Google's checkers, which are not on the allowlist, got a 2xx "
            f"from the load balancer: Cloud Armor let an outsider through. Look at the policy's "
            f"rules now (`make verify`, `make check-ip`). The probe POSTs to {PROBE_PATH}.",
            None,
            # On the value, the status code itself, rather than on a status-class label.
            promql=MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage(
                query=f'max by (check_id, checker_location) ({PROMQL_PROBE_STATUS}{{monitored_resource='
                f'"uptime_url",check_id=~"{regex_ids}"}}) >= 200 < 300',
                duration="0s", evaluation_interval="60s",
            ),  # fmt: skip
            severity="CRITICAL",
        )
        self._alert(
            "probe-failing",
            "More than one checker did not get Cloud Armor's 403 for 5 minutes: the endpoint is "
            "down (5xx, timeout, TLS) or open (2xx: see the open-door alert).",
            MonitoringAlertPolicyConditionsConditionThreshold(
                filter=_filter(f'metric.type = "{PROBE_PASSED}"', 'resource.type = "uptime_url"', probes),
                comparison="COMPARISON_GT",
                threshold_value=1,
                duration="300s",
                aggregations=[
                    MonitoringAlertPolicyConditionsConditionThresholdAggregations(
                        alignment_period="300s", per_series_aligner="ALIGN_NEXT_OLDER",
                        cross_series_reducer="REDUCE_COUNT_FALSE",
                        group_by_fields=["resource.label.host"],
                    )  # fmt: skip
                ],
                trigger=MonitoringAlertPolicyConditionsConditionThresholdTrigger(count=1),
            ),
            severity="CRITICAL",
        )

    # Traffic

    def _lb_filter(self, *terms: str) -> str:
        return _filter(
            f'metric.type = "{LB_REQUESTS}"', 'resource.type = "https_lb_rule"',
            f'resource.label.url_map_name = "{self.edge.url_map.name}"', *terms,
        )  # fmt: skip

    def _traffic_alerts(self, settings: EndpointSettings) -> None:
        rate = MonitoringAlertPolicyConditionsConditionThresholdAggregations(
            alignment_period="300s", per_series_aligner="ALIGN_RATE", cross_series_reducer="REDUCE_SUM",
        )  # fmt: skip
        self._alert(
            "5xx-ratio",
            f"More than {settings.alert_5xx_ratio:g} of the load balancer's requests answered 5xx "
            "over 5 minutes (ALERT_5XX_RATIO). The service's logs say why.",
            MonitoringAlertPolicyConditionsConditionThreshold(
                filter=self._lb_filter("metric.label.response_code_class = 500"),
                denominator_filter=self._lb_filter(),
                aggregations=[rate],
                denominator_aggregations=[
                    MonitoringAlertPolicyConditionsConditionThresholdDenominatorAggregations(
                        alignment_period="300s", per_series_aligner="ALIGN_RATE", cross_series_reducer="REDUCE_SUM",
                    )  # fmt: skip
                ],
                comparison="COMPARISON_GT",
                threshold_value=settings.alert_5xx_ratio,
                duration="300s",
            ),
            severity="ERROR",
        )
        self._alert(
            "p95-latency",
            f"The load balancer's 95th percentile total latency stayed above {settings.alert_p95_ms} ms "
            "for 5 minutes (ALERT_P95_MS): cold starts, a slow model, or too few instances.",
            MonitoringAlertPolicyConditionsConditionThreshold(
                filter=_filter(
                    f'metric.type = "{LB_LATENCIES}"', 'resource.type = "https_lb_rule"',
                    f'resource.label.url_map_name = "{self.edge.url_map.name}"',
                ),  # fmt: skip
                aggregations=[
                    MonitoringAlertPolicyConditionsConditionThresholdAggregations(
                        alignment_period="300s", per_series_aligner="ALIGN_PERCENTILE_95",
                        cross_series_reducer="REDUCE_MAX",
                    )  # fmt: skip
                ],
                comparison="COMPARISON_GT",
                threshold_value=settings.alert_p95_ms,
                duration="300s",
            ),
            severity="WARNING",
        )
        self._alert(
            "denials",
            f"Cloud Armor denied more than {settings.alert_denials_per_minute} requests a minute over "
            "10 minutes (ALERT_DENIALS_PER_MINUTE): someone outside the allowlist is trying, or an "
            "allowed client's address changed (`make allowlist-diff`). The uptime checks' own "
            "denials, a few a minute, stay far below the threshold.",
            MonitoringAlertPolicyConditionsConditionThreshold(
                filter=_filter(
                    f'metric.type = "{ARMOR_REQUESTS}"', 'resource.type = "network_security_policy"',
                    f'resource.label.policy_name = "{self.edge.policy.name}"', 'metric.label.blocked = "true"',
                ),  # fmt: skip
                aggregations=[
                    MonitoringAlertPolicyConditionsConditionThresholdAggregations(
                        alignment_period="600s", per_series_aligner="ALIGN_RATE", cross_series_reducer="REDUCE_SUM",
                    )  # fmt: skip
                ],
                comparison="COMPARISON_GT",
                # ALIGN_RATE counts a second.
                threshold_value=settings.alert_denials_per_minute / 60,
                duration="600s",
            ),
            severity="WARNING",
        )
        self._alert(
            "model-load",
            f"The service logged `{LOAD_FAILURE_MESSAGE} …` (severity ERROR): requests answer 503 "
            "until a load succeeds. The log entry's `cause` and `message` say why.",
            MonitoringAlertPolicyConditionsConditionThreshold(
                filter=_filter(
                    f'metric.type = "logging.googleapis.com/user/{self.load_failures.name}"',
                    'resource.type = "cloud_run_revision"',
                ),
                aggregations=[
                    MonitoringAlertPolicyConditionsConditionThresholdAggregations(
                        alignment_period="300s", per_series_aligner="ALIGN_DELTA", cross_series_reducer="REDUCE_SUM",
                    )  # fmt: skip
                ],
                comparison="COMPARISON_GT",
                threshold_value=0,
                duration="0s",
            ),
            severity="ERROR",
        )

    def _load_failure_metric(self) -> LoggingMetric:
        services = " OR ".join(f'"{serving.service.name}"' for serving in self.servings)
        return LoggingMetric(
            self,
            "load-failures",
            name=LOAD_FAILURE_METRIC,
            description="Failed model loads, from the service's own structured error line",
            filter=_filter(
                'resource.type = "cloud_run_revision"', f"resource.labels.service_name = ({services})",
                "severity >= ERROR", f'jsonPayload.message =~ "^{LOAD_FAILURE_MESSAGE} "',
                "jsonPayload.cause:*",
            ),  # fmt: skip
            label_extractors={"cause": "EXTRACT(jsonPayload.cause)"},
            metric_descriptor=LoggingMetricMetricDescriptor(
                metric_kind="DELTA", value_type="INT64", unit="1",
                labels=[LoggingMetricMetricDescriptorLabels(key="cause", value_type="STRING",
                                                            description="the kind of load failure")],
            ),  # fmt: skip
        )

    def _canary_alert(self) -> None:
        def ratio(role: str, *, none_is_zero: bool) -> str:
            selector = (
                f'monitored_resource="https_lb_rule",url_map_name="{self.edge.url_map.name}",'
                f'backend_target_name="{self.edge.backends[role].name}"'
            )
            errors = f'sum(rate({PROMQL_LB_REQUESTS}{{{selector},response_code_class="500"}}[{CANARY_WINDOW}]))'
            if none_is_zero:  # no 5xx at all is a ratio of 0, not a missing series
                errors = f"({errors} or vector(0))"
            return f"{errors} / sum(rate({PROMQL_LB_REQUESTS}{{{selector}}}[{CANARY_WINDOW}]))"

        query = f"{ratio(CANARY, none_is_zero=False)} > ({ratio(STABLE, none_is_zero=True)}) + {CANARY_5XX_MARGIN}"
        self._alert(
            "canary-5xx",
            f"Over {CANARY_WINDOW}, the canary arm's 5xx ratio exceeded the stable arm's by more than "
            f"{CANARY_5XX_MARGIN}: consider CANARY_PERCENT lower or the canary removed (docs/rollout.md).",
            None,
            promql=MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage(
                query=query, duration="300s", evaluation_interval="60s",
            ),  # fmt: skip
            severity="ERROR",
        )

    def _alert(
        self,
        key: str,
        explanation: str,
        threshold: MonitoringAlertPolicyConditionsConditionThreshold | None,
        *,
        severity: str,
        promql: MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage | None = None,
    ) -> None:
        title = self.titles[key]
        self.policies[key] = MonitoringAlertPolicy(
            self,
            f"alert-{key}",
            display_name=alert_name(title),
            combiner="OR",
            severity=severity,
            conditions=[
                MonitoringAlertPolicyConditions(
                    display_name=title, condition_threshold=threshold, condition_prometheus_query_language=promql
                )
            ],
            notification_channels=[self.channel.id],
            documentation=MonitoringAlertPolicyDocumentation(content=explanation, mime_type="text/markdown"),
            alert_strategy=MonitoringAlertPolicyAlertStrategy(auto_close="86400s"),
        )

    # Dashboard

    def _dashboard(self) -> dict:
        url_map = f'resource.label.url_map_name = "{self.edge.url_map.name}"'
        lb = ('resource.type = "https_lb_rule"', url_map)
        services = ", ".join(f'"{serving.service.name}"' for serving in self.servings)

        def chart(title: str, filter: str, aligner: str, reducer: str | None, group_by: list[str]) -> dict:
            aggregation: dict = {"alignmentPeriod": "60s", "perSeriesAligner": aligner}
            if reducer:
                aggregation |= {"crossSeriesReducer": reducer, "groupByFields": group_by}
            return {
                "title": title,
                "xyChart": {
                    "dataSets": [
                        {
                            "plotType": "LINE",
                            "timeSeriesQuery": {"timeSeriesFilter": {"filter": filter, "aggregation": aggregation}},
                        }
                    ]
                },
            }

        widgets = [
            chart("Requests by response class", _filter(f'metric.type = "{LB_REQUESTS}"', *lb), "ALIGN_RATE",
                  "REDUCE_SUM", ["metric.label.response_code_class"]),
            chart("Requests by backend (arm)", _filter(f'metric.type = "{LB_REQUESTS}"', *lb), "ALIGN_RATE",
                  "REDUCE_SUM", ["resource.label.backend_target_name"]),
            *(
                chart(f"Latency p{p}", _filter(f'metric.type = "{LB_LATENCIES}"', *lb), f"ALIGN_PERCENTILE_{p}",
                      "REDUCE_MAX", ["resource.label.backend_target_name"])
                for p in (50, 95, 99)
            ),
            chart("Cloud Armor requests, denied and allowed",
                  _filter(f'metric.type = "{ARMOR_REQUESTS}"', 'resource.type = "network_security_policy"',
                          f'resource.label.policy_name = "{self.edge.policy.name}"'),
                  "ALIGN_RATE", "REDUCE_SUM", ["metric.label.blocked"]),
            chart("Instances",
                  _filter('metric.type = "run.googleapis.com/container/instance_count"',
                          'resource.type = "cloud_run_revision"', f"resource.label.service_name = one_of({services})"),
                  "ALIGN_MAX", "REDUCE_SUM", ["resource.label.service_name", "metric.label.state"]),
            chart("Model-load failures",
                  _filter(f'metric.type = "logging.googleapis.com/user/{self.load_failures.name}"',
                          'resource.type = "cloud_run_revision"'),
                  "ALIGN_DELTA", "REDUCE_SUM", ["metric.label.cause"]),
            chart("Probes: HTTP status each checker got (403 expected)",
                  _filter(f'metric.type = "{PROBE_STATUS}"', 'resource.type = "uptime_url"'),
                  "ALIGN_MAX", "REDUCE_MAX", ["metric.label.check_id", "metric.label.checker_location"]),
        ]  # fmt: skip
        width, height, columns = 24, 16, 48
        tiles = [
            {"xPos": (i % 2) * width, "yPos": (i // 2) * height, "width": width, "height": height, "widget": widget}
            for i, widget in enumerate(widgets)
        ]
        return {"displayName": f"{NAME} endpoint", "mosaicLayout": {"columns": columns, "tiles": tiles}}
