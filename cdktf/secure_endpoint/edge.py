"""The edge: a global external Application Load Balancer guarded by a Cloud Armor policy."""

import hashlib
from dataclasses import dataclass

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_google.compute_backend_service import (
    ComputeBackendService,
    ComputeBackendServiceBackend,
    ComputeBackendServiceLogConfig,
)
from cdktf_cdktf_provider_google.compute_global_address import ComputeGlobalAddress
from cdktf_cdktf_provider_google.compute_global_forwarding_rule import ComputeGlobalForwardingRule
from cdktf_cdktf_provider_google.compute_managed_ssl_certificate import (
    ComputeManagedSslCertificate,
    ComputeManagedSslCertificateManaged,
)
from cdktf_cdktf_provider_google.compute_region_network_endpoint_group import (
    ComputeRegionNetworkEndpointGroup,
)
from cdktf_cdktf_provider_google.compute_security_policy import (
    ComputeSecurityPolicy,
    ComputeSecurityPolicyAdaptiveProtectionConfig,
    ComputeSecurityPolicyAdaptiveProtectionConfigLayer7DdosDefenseConfig,
    ComputeSecurityPolicyAdvancedOptionsConfig,
    ComputeSecurityPolicyRule,
    ComputeSecurityPolicyRuleMatch,
    ComputeSecurityPolicyRuleMatchConfig,
    ComputeSecurityPolicyRuleMatchExpr,
    ComputeSecurityPolicyRuleRateLimitOptions,
    ComputeSecurityPolicyRuleRateLimitOptionsRateLimitThreshold,
)
from cdktf_cdktf_provider_google.compute_target_http_proxy import ComputeTargetHttpProxy
from cdktf_cdktf_provider_google.compute_target_https_proxy import ComputeTargetHttpsProxy
from cdktf_cdktf_provider_google.compute_url_map import ComputeUrlMap, ComputeUrlMapDefaultUrlRedirect
from constructs import Construct

from secure_endpoint.allowlist import chunk_ranges
from secure_endpoint.settings import EndpointSettings

NAME = "inference"
DEFAULT_RULE_PRIORITY = 2147483647
ALLOW_PRIORITY_START = 1000
# Cloud Armor stops at the first matching rule, lowest number first: WAF rules that are meant to
# guard allowed clients too must come before the allow rules.
WAF_PRIORITY_START = 100
PRIORITY_STEP = 10  # gaps leave room for rules added by hand
DENY = "deny(403)"
# Preconfigured WAF rules (OWASP CRS 3.3) at sensitivity 1, the fewest false positives.
WAF_RULES = (
    "sqli-v33-stable",
    "xss-v33-stable",
    "lfi-v33-stable",
    "rfi-v33-stable",
    "rce-v33-stable",
    "methodenforcement-v33-stable",
    "scannerdetection-v33-stable",
    "protocolattack-v33-stable",
    "sessionfixation-v33-stable",
)
CVE_RULE = "cve-canary"  # Log4Shell and other named CVEs


@dataclass(frozen=True)
class RulePlan:
    """One Cloud Armor rule, before it becomes a typed struct."""

    priority: int
    action: str
    description: str
    src_ip_ranges: tuple[str, ...] = ()
    expression: str | None = None


def plan_rules(settings: EndpointSettings) -> list[RulePlan]:
    """Every rule of the policy, in priority order."""
    rules: list[RulePlan] = []
    if settings.waf_rules:
        expressions = [(name, f"evaluatePreconfiguredWaf('{name}', {{'sensitivity': 1}})") for name in WAF_RULES]
        expressions.append((CVE_RULE, f"evaluatePreconfiguredExpr('{CVE_RULE}')"))
        for index, (name, expression) in enumerate(expressions):
            rules.append(
                RulePlan(
                    priority=WAF_PRIORITY_START + index * PRIORITY_STEP,
                    action=DENY,
                    description=f"WAF: {name}",
                    expression=expression,
                )
            )
    chunks = chunk_ranges(settings.allowed_ranges)
    action = "throttle" if settings.rate_limit_per_minute else "allow"
    for index, chunk in enumerate(chunks):
        rules.append(
            RulePlan(
                priority=ALLOW_PRIORITY_START + index * PRIORITY_STEP,
                action=action,
                description=f"ALLOWED_IP_RANGES part {index + 1} of {len(chunks)}",
                src_ip_ranges=tuple(chunk),
            )
        )
    rules.append(
        RulePlan(priority=DEFAULT_RULE_PRIORITY, action=DENY, description="default: deny everyone else", src_ip_ranges=("*",))
    )
    return rules


class ArmoredEdge(Construct):
    """The public side: one static address, Cloud Armor in front of the serving NEG.

        client ─► global address ─► forwarding rule :80 ─► HTTP proxy ─► URL map ─┐
                  (with DOMAIN:     forwarding rule :443 ─► HTTPS proxy + managed ─┤   port 80 then only
                                    certificate; port 80 ─► redirect-only URL map) │   redirects to HTTPS
                                                                                  ▼
        Cloud Armor policy (WAF, allowlist, deny 403) ─► backend service (request logs) ─► serverless NEG

    Outputs: `address`, `policy`, `backend`, `url_map`, `url`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EndpointSettings,
        neg: ComputeRegionNetworkEndpointGroup,
    ):
        super().__init__(scope, id)

        self.address = ComputeGlobalAddress(
            self, "address", name=f"{NAME}-lb-ip", address_type="EXTERNAL", ip_version="IPV4",
            description="Static address of the inference load balancer",
        )  # fmt: skip

        self.policy = ComputeSecurityPolicy(
            self,
            "policy",
            name=f"{NAME}-policy",
            description="Allow ALLOWED_IP_RANGES, deny everyone else with 403",
            rule=[self._rule(plan, settings) for plan in plan_rules(settings)],
            adaptive_protection_config=ComputeSecurityPolicyAdaptiveProtectionConfig(
                layer7_ddos_defense_config=ComputeSecurityPolicyAdaptiveProtectionConfigLayer7DdosDefenseConfig(
                    enable=True
                )
            ),
            # The WAF rules read JSON bodies as JSON rather than as opaque text: fewer false positives.
            advanced_options_config=ComputeSecurityPolicyAdvancedOptionsConfig(json_parsing="STANDARD"),
        )

        # No port_name, timeout_sec or health check: the API rejects each on a serverless NEG backend.
        self.backend = ComputeBackendService(
            self,
            "backend",
            name=f"{NAME}-backend",
            description="Cloud Run inference service behind Cloud Armor",
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTP",
            security_policy=self.policy.id,
            backend=[ComputeBackendServiceBackend(group=neg.id)],
            # Each request's log entry names the Cloud Armor rule that let it through or denied it.
            log_config=ComputeBackendServiceLogConfig(enable=True, sample_rate=1),
        )

        self.url_map = ComputeUrlMap(
            self, "url-map", name=f"{NAME}-lb", default_service=self.backend.id,
            description="Every path to the inference backend",
        )  # fmt: skip

        if settings.domain:
            self.certificate = self._certificate(settings.domain)
            https_proxy = ComputeTargetHttpsProxy(
                self, "https-proxy", name=f"{NAME}-https-proxy", url_map=self.url_map.id,
                ssl_certificates=[self.certificate.id],
            )  # fmt: skip
            self._forwarding_rule("https", https_proxy.id, port=443)
            self.redirect_map = ComputeUrlMap(
                self,
                "http-redirect",
                name=f"{NAME}-http-redirect",
                description="Port 80 redirects to HTTPS",
                default_url_redirect=ComputeUrlMapDefaultUrlRedirect(
                    https_redirect=True, strip_query=False, redirect_response_code="MOVED_PERMANENTLY_DEFAULT"
                ),
            )
            http_map = self.redirect_map
            self.url = f"https://{settings.domain}"
        else:
            http_map = self.url_map
            self.url = f"http://{self.address.address}"
        http_proxy = ComputeTargetHttpProxy(self, "http-proxy", name=f"{NAME}-http-proxy", url_map=http_map.id)
        self._forwarding_rule("http", http_proxy.id, port=80)

    def _rule(self, plan: RulePlan, settings: EndpointSettings) -> ComputeSecurityPolicyRule:
        if plan.expression:
            match = ComputeSecurityPolicyRuleMatch(
                expr=ComputeSecurityPolicyRuleMatchExpr(expression=plan.expression)
            )
        else:
            match = ComputeSecurityPolicyRuleMatch(
                versioned_expr="SRC_IPS_V1",
                config=ComputeSecurityPolicyRuleMatchConfig(src_ip_ranges=list(plan.src_ip_ranges)),
            )
        rate_limit = None
        if plan.action == "throttle":
            rate_limit = ComputeSecurityPolicyRuleRateLimitOptions(
                conform_action="allow",
                exceed_action="deny(429)",
                enforce_on_key="IP",
                rate_limit_threshold=ComputeSecurityPolicyRuleRateLimitOptionsRateLimitThreshold(
                    count=settings.rate_limit_per_minute, interval_sec=60
                ),
            )
        return ComputeSecurityPolicyRule(
            priority=plan.priority,
            action=plan.action,
            description=plan.description,
            match=match,
            rate_limit_options=rate_limit,
        )

    def _certificate(self, domain: str) -> ComputeManagedSslCertificate:
        # A certificate in use cannot change in place: a new domain gets a new name, created
        # before the old one is destroyed.
        suffix = hashlib.sha256(domain.encode()).hexdigest()[:8]
        return ComputeManagedSslCertificate(
            self,
            "certificate",
            name=f"{NAME}-cert-{suffix}",
            managed=ComputeManagedSslCertificateManaged(domains=[domain]),
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )

    def _forwarding_rule(self, scheme: str, target: str, *, port: int) -> ComputeGlobalForwardingRule:
        return ComputeGlobalForwardingRule(
            self,
            f"{scheme}-forwarding-rule",
            name=f"{NAME}-{scheme}",
            description=f"Inference load balancer, {scheme.upper()} on port {port}",
            load_balancing_scheme="EXTERNAL_MANAGED",
            target=target,
            ip_address=self.address.address,
            ip_protocol="TCP",
            port_range=str(port),
        )

