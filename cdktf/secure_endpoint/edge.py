"""The edge: a global external Application Load Balancer guarded by a Cloud Armor policy."""

from cdktn import TerraformResourceLifecycle
from cdktn_provider_google.compute_backend_service import (
    ComputeBackendService,
    ComputeBackendServiceBackend,
    ComputeBackendServiceLogConfig,
)
from cdktn_provider_google.compute_global_address import ComputeGlobalAddress
from cdktn_provider_google.compute_global_forwarding_rule import ComputeGlobalForwardingRule
from cdktn_provider_google.compute_managed_ssl_certificate import (
    ComputeManagedSslCertificate,
    ComputeManagedSslCertificateManaged,
)
from cdktn_provider_google.compute_security_policy import (
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
from cdktn_provider_google.compute_ssl_policy import ComputeSslPolicy
from cdktn_provider_google.compute_target_http_proxy import ComputeTargetHttpProxy
from cdktn_provider_google.compute_target_https_proxy import ComputeTargetHttpsProxy
from cdktn_provider_google.compute_url_map import (
    ComputeUrlMap,
    ComputeUrlMapDefaultRouteAction,
    ComputeUrlMapDefaultRouteActionWeightedBackendServices,
    ComputeUrlMapDefaultUrlRedirect,
    ComputeUrlMapHostRule,
    ComputeUrlMapPathMatcher,
    ComputeUrlMapPathMatcherDefaultRouteAction,
    ComputeUrlMapPathMatcherDefaultRouteActionWeightedBackendServices,
    ComputeUrlMapPathMatcherRouteRules,
    ComputeUrlMapPathMatcherRouteRulesMatchRules,
    ComputeUrlMapPathMatcherRouteRulesMatchRulesHeaderMatches,
)
from constructs import Construct

from secure_endpoint.free_text import literal
from secure_endpoint.armor import Rule
from secure_endpoint.plan import (
    ADDRESS_NAME,
    ADDRESS_V6_NAME,
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    CANARY_ROUTE_PRIORITY,
    HTTP_PROXY_NAME,
    HTTPS_PROXY_NAME,
    JSON_PARSING,
    MIN_TLS_VERSION,
    NAME,
    POLICY_NAME,
    REDIRECT_MAP_NAME,
    SPLIT_MATCHER_NAME,
    SSL_POLICY_NAME,
    SSL_PROFILE,
    STABLE,
    URL_MAP_NAME,
    certificate_name,
    plan_rules,
)
from secure_endpoint.serving import ServingBackend
from secure_endpoint.settings import EndpointSettings


# Where the stack kept its one certificate before certificates were keyed by domain.
UNKEYED_CERTIFICATE = "google_compute_managed_ssl_certificate.edge_certificate_4B15C2CA"


class ArmoredEdge(Construct):
    """The public side: one static address (two with IPV6), Cloud Armor in front of the serving NEG.

        client ─► global address ─► forwarding rule :80 ─► HTTP proxy ─► URL map ─┐
                  (with DOMAIN:     forwarding rule :443 ─► HTTPS proxy + managed ─┤   port 80 then only
                                    certificate(s), SSL policy MODERN, TLS >= 1.2; │   answers 308 to
                                    port 80 ─► redirect-only URL map)              │   HTTPS
                  (with IPV6: an IPv6 global address with the same forwarding      │
                   rules, onto the same proxies)                                   ▼
        Cloud Armor policy (WAF, allowlist, deny 403) ─► backend service (request logs) ─► serverless NEG

    One backend service per arm of `servings`, each with the same policy. With a canary, the URL
    map that serves (the HTTPS one with DOMAIN) splits requests by weight between the two, and a
    route sends `X-Model-Canary: 1` to the canary:

        URL map ─ host * ─► path matcher "split" ─┬─ X-Model-Canary: 1 ───────► canary backend
                                                  └─ else: 100-P% stable, P% canary

    With PREVIOUS_DOMAIN, the old domain's certificate stays on the HTTPS proxy beside the new one.

    Order of changes. Each backend service depends on its arm's Cloud Run service and on the IAM
    wait that service waited out (`ServingBackend.ready`); the URL map references the backends.
    So an arm gets traffic only once its service exists and started: a new canary, or the
    service in a new REGION (another address, see ServingBackend), is created and waited for
    before its backend service is created or moved, and the URL map changes last. Destruction
    goes the other way: Terraform destroys dependents first, so a removed arm's backend service
    goes before its Cloud Run service, which is never deleted while a backend can send to it.

    Terraform up to at least 1.11 (the one tested here) updates a resource only after destroying
    what it depended on and no longer does, unless that is create_before_destroy. Removing a
    canary in one deploy therefore first tries to delete its backend service, which the API
    refuses while the URL map uses it; the canary's service waits for that, so nothing is deleted
    and the deploy fails with the canary still serving. Moving REGION in one deploy deletes the
    old service before the backend moves. Both take two steps there (the deploy docs), and one
    deploy with a Terraform that orders such updates first. create_before_destroy on the backend
    service would order them in any Terraform, but Terraform forces it on everything a
    create_before_destroy resource depends on: the Cloud Run service would then be created again
    before its tainted copy (a failed first revision) is deleted, under the same name, and the
    API refuses that (409). So nothing that depends on a Cloud Run service is
    create_before_destroy, and the NEG, which is, names its service by value.

    Outputs: `address`, `address_v6` (None without IPV6), `policy`, `backends` (by role),
    `backend` (the stable one), `url_map`, `url`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EndpointSettings,
        servings: list[ServingBackend],
    ):
        super().__init__(scope, id)

        self.address = ComputeGlobalAddress(
            self, "address", name=ADDRESS_NAME, address_type="EXTERNAL", ip_version="IPV4",
            description="Static address of the inference load balancer",
        )  # fmt: skip
        # A setting of its own, not inferred from the ranges: removing the last IPv6 range must
        # not release an address that a published AAAA record still points at.
        self.address_v6 = (
            ComputeGlobalAddress(
                self, "address-v6", name=ADDRESS_V6_NAME, address_type="EXTERNAL", ip_version="IPV6",
                description="Static IPv6 address of the inference load balancer",
            )  # fmt: skip
            if settings.ipv6
            else None
        )

        self.policy = ComputeSecurityPolicy(
            self,
            "policy",
            name=POLICY_NAME,
            description="Allow ALLOWED_IP_RANGES, deny everyone else with 403",
            rule=[self._rule(rule) for rule in plan_rules(settings)],
            adaptive_protection_config=ComputeSecurityPolicyAdaptiveProtectionConfig(
                layer7_ddos_defense_config=ComputeSecurityPolicyAdaptiveProtectionConfigLayer7DdosDefenseConfig(
                    enable=True
                )
            ),
            advanced_options_config=ComputeSecurityPolicyAdvancedOptionsConfig(json_parsing=JSON_PARSING),
        )

        # LB_LOG_SAMPLE_RATE: check-ip replays and audits see only the requests logged.
        self.log_sample_rate = settings.lb_log_sample_rate
        self.backends = {serving.arm.role: self._backend(serving) for serving in servings}
        self.backend = self.backends[STABLE]

        if len(servings) == 1:
            self.url_map = ComputeUrlMap(
                self, "url-map", name=URL_MAP_NAME, default_service=self.backend.id,
                description="Every path to the inference backend",
            )  # fmt: skip
        else:
            self.url_map = self._split_url_map(servings)

        if settings.domain:
            previous = settings.previous_domain
            # State from before certificates were keyed by domain holds the one live certificate:
            # the old domain's while a change is under way, else the domain's own.
            self.certificate = self._certificate(settings.domain, takes_over_unkeyed=not previous)
            self.previous_certificate = (
                self._certificate(previous, takes_over_unkeyed=True) if previous else None
            )
            certificates = [c for c in (self.certificate, self.previous_certificate) if c is not None]
            self.ssl_policy = ComputeSslPolicy(
                self, "ssl-policy", name=SSL_POLICY_NAME, profile=SSL_PROFILE, min_tls_version=MIN_TLS_VERSION,
                description="TLS 1.2 or later with forward-secret ciphers",
            )  # fmt: skip
            https_proxy = ComputeTargetHttpsProxy(
                self, "https-proxy", name=HTTPS_PROXY_NAME, url_map=self.url_map.id,
                ssl_certificates=[c.id for c in certificates], ssl_policy=self.ssl_policy.id,
            )  # fmt: skip
            self._forwarding_rules("https", https_proxy.id, port=443)
            self.redirect_map = ComputeUrlMap(
                self,
                "http-redirect",
                name=REDIRECT_MAP_NAME,
                description="Port 80 redirects to HTTPS",
                # 308 keeps the method: a POST is redirected as a POST, not turned into a GET.
                default_url_redirect=ComputeUrlMapDefaultUrlRedirect(
                    https_redirect=True, strip_query=False, redirect_response_code="PERMANENT_REDIRECT"
                ),
            )
            http_map = self.redirect_map
            self.url = f"https://{settings.domain}"
        else:
            http_map = self.url_map
            self.url = f"http://{self.address.address}"
        http_proxy = ComputeTargetHttpProxy(self, "http-proxy", name=HTTP_PROXY_NAME, url_map=http_map.id)
        self._forwarding_rules("http", http_proxy.id, port=80)

    def _backend(self, serving: ServingBackend) -> ComputeBackendService:
        arm = serving.arm
        # No port_name, timeout_sec or health check: the API rejects each on a serverless NEG backend.
        return ComputeBackendService(
            self,
            f"backend{arm.suffix}",
            name=arm.backend_name,
            description=f"Cloud Run {arm.service_name} service behind Cloud Armor",
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTP",
            security_policy=self.policy.id,
            backend=[ComputeBackendServiceBackend(group=serving.neg.id)],
            # Each request's log entry names the Cloud Armor rule that let it through or denied it.
            log_config=ComputeBackendServiceLogConfig(enable=True, sample_rate=self.log_sample_rate),
            # See "Order of changes" above: traffic reaches an arm only once its service is up.
            depends_on=serving.ready,
        )

    def _split_url_map(self, servings: list[ServingBackend]) -> ComputeUrlMap:
        """Weighted backend services instead of a default service (the API takes one or the
        other), and the header route that reaches the canary whatever its weight."""
        weights = [(self.backends[s.arm.role].id, s.arm.percent) for s in servings]
        (canary,) = [self.backends[s.arm.role] for s in servings if s.arm.role != STABLE]
        header = ComputeUrlMapPathMatcherRouteRulesMatchRulesHeaderMatches(
            header_name=CANARY_HEADER, exact_match=CANARY_HEADER_VALUE
        )
        return ComputeUrlMap(
            self,
            "url-map",
            name=URL_MAP_NAME,
            description=f"Weighted split between the stable and canary backends; {CANARY_HEADER}: "
            f"{CANARY_HEADER_VALUE} to the canary",
            # Used for a host the host rule's * does not match: the same split, without the route.
            default_route_action=ComputeUrlMapDefaultRouteAction(
                weighted_backend_services=[
                    ComputeUrlMapDefaultRouteActionWeightedBackendServices(backend_service=backend, weight=weight)
                    for backend, weight in weights
                ]
            ),
            host_rule=[ComputeUrlMapHostRule(hosts=["*"], path_matcher=SPLIT_MATCHER_NAME)],
            path_matcher=[
                ComputeUrlMapPathMatcher(
                    name=SPLIT_MATCHER_NAME,
                    default_route_action=ComputeUrlMapPathMatcherDefaultRouteAction(
                        weighted_backend_services=[
                            ComputeUrlMapPathMatcherDefaultRouteActionWeightedBackendServices(
                                backend_service=backend, weight=weight
                            )
                            for backend, weight in weights
                        ]
                    ),
                    route_rules=[
                        ComputeUrlMapPathMatcherRouteRules(
                            priority=CANARY_ROUTE_PRIORITY,
                            service=canary.id,
                            match_rules=[
                                ComputeUrlMapPathMatcherRouteRulesMatchRules(prefix_match="/", header_matches=[header])
                            ],
                        )
                    ],
                )
            ],
        )

    def _rule(self, plan: Rule) -> ComputeSecurityPolicyRule:
        if plan.expression is not None:
            match = ComputeSecurityPolicyRuleMatch(
                expr=ComputeSecurityPolicyRuleMatchExpr(expression=plan.expression)
            )
        else:
            match = ComputeSecurityPolicyRuleMatch(
                versioned_expr="SRC_IPS_V1",
                config=ComputeSecurityPolicyRuleMatchConfig(src_ip_ranges=list(plan.src_ip_ranges)),
            )
        rate_limit = None
        if plan.rate_limit is not None:
            rate_limit = ComputeSecurityPolicyRuleRateLimitOptions(
                conform_action=plan.rate_limit.conform_action,
                exceed_action=plan.rate_limit.exceed_action,
                enforce_on_key=plan.rate_limit.enforce_on_key,
                rate_limit_threshold=ComputeSecurityPolicyRuleRateLimitOptionsRateLimitThreshold(
                    count=plan.rate_limit.count, interval_sec=plan.rate_limit.interval_sec
                ),
            )
        return ComputeSecurityPolicyRule(
            priority=plan.priority,
            action=plan.action,
            # Owners' names are free text: never a template.
            description=literal(plan.description),
            match=match,
            rate_limit_options=rate_limit,
            preview=plan.preview or None,
        )

    def _certificate(self, domain: str, *, takes_over_unkeyed: bool) -> ComputeManagedSslCertificate:
        """One certificate per domain, keyed by it: a new DOMAIN adds a resource instead of
        replacing the one in use, which stays until the new one is ACTIVE (PREVIOUS_DOMAIN)."""
        name = certificate_name(domain)
        certificate = ComputeManagedSslCertificate(
            self,
            name,
            name=name,
            managed=ComputeManagedSslCertificateManaged(domains=[domain]),
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        if takes_over_unkeyed:
            certificate.move_from_id(UNKEYED_CERTIFICATE)
        return certificate

    def _forwarding_rules(self, scheme: str, target: str, *, port: int) -> None:
        """One rule per address; the IPv4 rule keeps its name so that IPV6=true replaces nothing."""
        addresses = [("", "", self.address)]
        if self.address_v6 is not None:
            addresses.append(("-ipv6", ", IPv6", self.address_v6))
        for suffix, family, address in addresses:
            ComputeGlobalForwardingRule(
                self,
                f"{scheme}-forwarding-rule{suffix}",
                name=f"{NAME}-{scheme}{suffix}",
                description=f"Inference load balancer, {scheme.upper()} on port {port}{family}",
                load_balancing_scheme="EXTERNAL_MANAGED",
                target=target,
                ip_address=address.address,
                ip_protocol="TCP",
                port_range=str(port),
            )

