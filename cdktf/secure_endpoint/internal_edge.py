"""The private edge (EXPOSURE=internal): a regional internal Application Load Balancer in a VPC,
guarded by a regional Cloud Armor policy with the same allowlist."""

from cdktn import (
    Fn,
    Postcondition,
    TerraformOutput,
    TerraformProvider,
    TerraformProviderGeneratorMetadata,
    TerraformResourceLifecycle,
)
from cdktn_provider_google.certificate_manager_certificate import (
    CertificateManagerCertificate,
    CertificateManagerCertificateManaged,
)
from cdktn_provider_google.certificate_manager_dns_authorization import (
    CertificateManagerDnsAuthorization,
)
from cdktn_provider_google.compute_address import ComputeAddress
from cdktn_provider_google.compute_forwarding_rule import ComputeForwardingRule
from cdktn_provider_google.compute_region_backend_service import (
    ComputeRegionBackendService,
    ComputeRegionBackendServiceBackend,
    ComputeRegionBackendServiceLogConfig,
)
from cdktn_provider_google.compute_region_security_policy import (
    ComputeRegionSecurityPolicy,
    ComputeRegionSecurityPolicyAdvancedOptionsConfig,
    ComputeRegionSecurityPolicyRules,
    ComputeRegionSecurityPolicyRulesMatch,
    ComputeRegionSecurityPolicyRulesMatchConfig,
    ComputeRegionSecurityPolicyRulesMatchExpr,
    ComputeRegionSecurityPolicyRulesRateLimitOptions,
    ComputeRegionSecurityPolicyRulesRateLimitOptionsRateLimitThreshold,
)
from cdktn_provider_google.compute_region_ssl_policy import ComputeRegionSslPolicy
from cdktn_provider_google.compute_region_target_http_proxy import ComputeRegionTargetHttpProxy
from cdktn_provider_google.compute_region_target_https_proxy import ComputeRegionTargetHttpsProxy
from cdktn_provider_google.compute_region_url_map import (
    ComputeRegionUrlMap,
    ComputeRegionUrlMapDefaultRouteAction,
    ComputeRegionUrlMapDefaultRouteActionWeightedBackendServices,
    ComputeRegionUrlMapDefaultUrlRedirect,
    ComputeRegionUrlMapHostRule,
    ComputeRegionUrlMapPathMatcher,
    ComputeRegionUrlMapPathMatcherDefaultRouteAction,
    ComputeRegionUrlMapPathMatcherDefaultRouteActionWeightedBackendServices,
    ComputeRegionUrlMapPathMatcherRouteRules,
    ComputeRegionUrlMapPathMatcherRouteRulesMatchRules,
    ComputeRegionUrlMapPathMatcherRouteRulesMatchRulesHeaderMatches,
)
from cdktn_provider_google.compute_subnetwork import ComputeSubnetwork
from cdktn_provider_google.data_google_compute_network import DataGoogleComputeNetwork
from cdktn_provider_google.data_google_compute_subnetwork import DataGoogleComputeSubnetwork
from cdktn_provider_google.dns_managed_zone import (
    DnsManagedZone,
    DnsManagedZonePrivateVisibilityConfig,
    DnsManagedZonePrivateVisibilityConfigNetworks,
)
from cdktn_provider_google.dns_record_set import DnsRecordSet
from cdktn_provider_google.provider import GoogleProvider
from constructs import Construct

from secure_endpoint import internal_plan as names
from secure_endpoint.armor import Rule
from secure_endpoint.exposure import subnet_region
from secure_endpoint.free_text import literal
from secure_endpoint.plan import (
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    CANARY_ROUTE_PRIORITY,
    MIN_TLS_VERSION,
    SPLIT_MATCHER_NAME,
    SSL_PROFILE,
    STABLE,
)
from secure_endpoint.serving import ServingBackend
from secure_endpoint.settings import EndpointSettings

BETA_PROVIDER = "google-beta"
BETA_SOURCE = "hashicorp/google-beta"
# Checked on the state the provider returns after each apply of a regional backend service.
POLICY_ATTACHED = '${self.security_policy != null && self.security_policy != ""}'
NOT_ATTACHED = (
    "the regional backend service was created without its Cloud Armor policy: requests would "
    "reach the service unchecked. Nothing routes to it yet; run `make deploy` again and then "
    "`make verify`"
)


class GoogleBetaProvider(TerraformProvider):
    """hashicorp/google-beta at the GA bindings' own version, for the one resource that needs it.

    The GA provider attaches a regional backend service's `security_policy` only on update, not
    on create (terraform-provider-google issue 29240, open; its fix, magic-modules pull request
    19015, unmerged when 8.7 was pinned): the first apply would leave the backend without Cloud
    Armor. The beta provider calls setSecurityPolicy on create. No beta bindings exist for cdktn,
    so this provider is declared by hand; the resource itself stays typed by the GA bindings
    (the beta schema is a superset of it).
    """

    def __init__(self, scope: Construct, id: str, *, ga: GoogleProvider, project: str, region: str):
        metadata = ga.terraform_generator_metadata
        super().__init__(
            scope,
            id,
            terraform_resource_type=BETA_PROVIDER,
            terraform_generator_metadata=TerraformProviderGeneratorMetadata(
                provider_name=BETA_PROVIDER, provider_version=metadata.provider_version
            ),
            terraform_provider_source=BETA_SOURCE,
        )
        self._attributes = {"project": project, "region": region}

    def _synthesize_attributes(self):
        return dict(self._attributes)

    def _synthesize_hcl_attributes(self):
        return {key: {"value": value, "type": "simple", "storageClassType": "string", "isBlock": False}
                for key, value in self._attributes.items()}  # fmt: skip


class InternalEdge(Construct):
    """The private side: one internal address in SUBNET, Cloud Armor in front of the serving NEG.

        client in the VPC ─► internal address (SUBNET, SHARED_LOADBALANCER_VIP)
          (or peered, VPN,     ├─ forwarding rule :80 ─► regional HTTP proxy ─► URL map ─┐
           Interconnect;       └─ with DOMAIN: forwarding rule :443 ─► regional HTTPS     │
           other regions with     proxy (Certificate Manager certificate, DNS-authorized; │
           GLOBAL_ACCESS)         regional SSL policy MODERN, TLS >= 1.2); :80 then 308s  ▼
        regional Cloud Armor policy (WAF, allowlist, deny 403) ─► regional backend service
          (INTERNAL_MANAGED, request logs; on google-beta so the policy is attached on create)
          ─► serverless NEG ─► Cloud Run (ingress: internal only, run.app URL closed)

        proxy-only subnet (REGIONAL_MANAGED_PROXY, ACTIVE): made when PROXY_SUBNET_CIDR is set,
          else one exists; the forwarding rules wait for it
        with DOMAIN: private Cloud DNS zone DOMAIN on NETWORK ─ A ─► the internal address

    With a canary, the URL map that serves splits by weight and routes `X-Model-Canary: 1` to the
    canary, as the public edge does.

    Outputs: `address`, `policy`, `backends` (by role), `backend`, `url_map`, `url`,
    `dns_authorization` (None without DOMAIN), `proxy_subnet` (None when one exists).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EndpointSettings,
        servings: list[ServingBackend],
        ga: GoogleProvider,
    ):
        super().__init__(scope, id)
        region = settings.region
        self.address_v6 = None  # IPv4 only (IPV6 is refused with EXPOSURE=internal)
        self.beta = GoogleBetaProvider(
            self, "google-beta", ga=ga, project=settings.project_id, region=region
        )

        # Looked up at plan: a NETWORK or SUBNET that does not exist fails the plan, naming it.
        network_project, network_name = _project_and_name(settings.network, settings.project_id)
        self.network = DataGoogleComputeNetwork(
            self, "network", name=network_name, project=network_project
        )
        if subnet_region(settings.subnet):
            self.subnet = DataGoogleComputeSubnetwork(self, "subnet", self_link=settings.subnet)
        else:
            self.subnet = DataGoogleComputeSubnetwork(
                self, "subnet", name=settings.subnet, region=region
            )

        self.proxy_subnet = (
            ComputeSubnetwork(
                self,
                "proxy-subnet",
                name=names.proxy_subnet_name(region),
                region=region,
                network=self.network.self_link,
                ip_cidr_range=settings.proxy_subnet_cidr,
                purpose="REGIONAL_MANAGED_PROXY",
                role="ACTIVE",
                description="Proxy-only subnet of the region's Envoy-based load balancers",
            )
            if settings.proxy_subnet_cidr
            else None
        )

        self.address = ComputeAddress(
            self, "address", name=names.ADDRESS_NAME, region=region, address_type="INTERNAL",
            # :80 and :443 share it.
            purpose="SHARED_LOADBALANCER_VIP", subnetwork=self.subnet.self_link,
            description="Internal address of the inference load balancer",
        )  # fmt: skip

        self.policy = ComputeRegionSecurityPolicy(
            self,
            "policy",
            name=names.POLICY_NAME,
            region=region,
            type=names.POLICY_TYPE,
            description="Allow ALLOWED_IP_RANGES, deny everyone else with 403",
            rules=[self._rule(rule, settings) for rule in names.plan_internal_rules(settings)],
            advanced_options_config=ComputeRegionSecurityPolicyAdvancedOptionsConfig(
                json_parsing="STANDARD"
            ),
        )

        # LB_LOG_SAMPLE_RATE: check-ip replays and audits see only the requests logged.
        self.log_sample_rate = settings.lb_log_sample_rate
        self.backends = {serving.arm.role: self._backend(serving, region) for serving in servings}
        self.backend = self.backends[STABLE]

        if len(servings) == 1:
            self.url_map = ComputeRegionUrlMap(
                self, "url-map", name=names.URL_MAP_NAME, region=region, default_service=self.backend.id,
                description="Every path to the inference backend",
            )  # fmt: skip
        else:
            self.url_map = self._split_url_map(servings, region)

        self.dns_authorization = None
        if settings.domain:
            self.dns_authorization = CertificateManagerDnsAuthorization(
                self, "dns-authorization", name=names.DNS_AUTHORIZATION_NAME, location=region,
                domain=settings.domain, type="PER_PROJECT_RECORD",
                description="Proves DOMAIN for the internal load balancer's certificate",
            )  # fmt: skip
            self.certificate = CertificateManagerCertificate(
                self, "certificate", name=names.CERTIFICATE_NAME, location=region,
                managed=CertificateManagerCertificateManaged(
                    domains=[settings.domain], dns_authorizations=[self.dns_authorization.id]
                ),
                lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
            )  # fmt: skip
            self.ssl_policy = ComputeRegionSslPolicy(
                self, "ssl-policy", name=names.SSL_POLICY_NAME, region=region, profile=SSL_PROFILE,
                min_tls_version=MIN_TLS_VERSION, description="TLS 1.2 or later with forward-secret ciphers",
            )  # fmt: skip
            https_proxy = ComputeRegionTargetHttpsProxy(
                self, "https-proxy", name=names.HTTPS_PROXY_NAME, region=region, url_map=self.url_map.id,
                certificate_manager_certificates=[self.certificate.id], ssl_policy=self.ssl_policy.id,
            )  # fmt: skip
            self._forwarding_rule("https", https_proxy.id, 443, settings)
            self.redirect_map = ComputeRegionUrlMap(
                self,
                "http-redirect",
                name=names.REDIRECT_MAP_NAME,
                region=region,
                description="Port 80 redirects to HTTPS",
                # 308 keeps the method: a POST is redirected as a POST.
                default_url_redirect=ComputeRegionUrlMapDefaultUrlRedirect(
                    https_redirect=True,
                    strip_query=False,
                    redirect_response_code="PERMANENT_REDIRECT",
                ),
            )
            http_map = self.redirect_map
            self.url = f"https://{settings.domain}"
            self._private_zone(settings)
        else:
            http_map = self.url_map
            self.url = f"http://{self.address.address}"
        http_proxy = ComputeRegionTargetHttpProxy(
            self, "http-proxy", name=names.HTTP_PROXY_NAME, region=region, url_map=http_map.id
        )
        self._forwarding_rule("http", http_proxy.id, 80, settings)

    def _backend(self, serving: ServingBackend, region: str) -> ComputeRegionBackendService:
        arm = serving.arm
        # No health check, port_name or timeout: the API rejects each on a serverless NEG backend.
        return ComputeRegionBackendService(
            self,
            f"backend{arm.suffix}",
            provider=self.beta,
            name=arm.backend_name,
            region=region,
            description=f"Cloud Run {arm.service_name} service behind regional Cloud Armor",
            load_balancing_scheme=names.SCHEME,
            protocol="HTTP",
            security_policy=self.policy.self_link,
            backend=[
                ComputeRegionBackendServiceBackend(
                    group=serving.neg.id, balancing_mode=names.BALANCING_MODE, capacity_scaler=1
                )
            ],
            log_config=ComputeRegionBackendServiceLogConfig(enable=True, sample_rate=self.log_sample_rate),
            # Should a provider ever create it without the policy again, the apply stops here,
            # before any URL map, proxy or forwarding rule can send a request to it.
            lifecycle=TerraformResourceLifecycle(
                postcondition=[
                    Postcondition(
                        condition=POLICY_ATTACHED,
                        error_message=NOT_ATTACHED,
                    )
                ]
            ),
        )

    def _split_url_map(self, servings: list[ServingBackend], region: str) -> ComputeRegionUrlMap:
        weights = [(self.backends[s.arm.role].id, s.arm.percent) for s in servings]
        (canary,) = [self.backends[s.arm.role] for s in servings if s.arm.role != STABLE]
        header = ComputeRegionUrlMapPathMatcherRouteRulesMatchRulesHeaderMatches(
            header_name=CANARY_HEADER, exact_match=CANARY_HEADER_VALUE
        )
        return ComputeRegionUrlMap(
            self,
            "url-map",
            name=names.URL_MAP_NAME,
            region=region,
            description=f"Weighted split between the stable and canary backends; {CANARY_HEADER}: "
            f"{CANARY_HEADER_VALUE} to the canary",
            default_route_action=ComputeRegionUrlMapDefaultRouteAction(
                weighted_backend_services=[
                    ComputeRegionUrlMapDefaultRouteActionWeightedBackendServices(
                        backend_service=b, weight=w
                    )
                    for b, w in weights
                ]
            ),
            host_rule=[ComputeRegionUrlMapHostRule(hosts=["*"], path_matcher=SPLIT_MATCHER_NAME)],
            path_matcher=[
                ComputeRegionUrlMapPathMatcher(
                    name=SPLIT_MATCHER_NAME,
                    default_route_action=ComputeRegionUrlMapPathMatcherDefaultRouteAction(
                        weighted_backend_services=[
                            ComputeRegionUrlMapPathMatcherDefaultRouteActionWeightedBackendServices(
                                backend_service=b, weight=w
                            )
                            for b, w in weights
                        ]
                    ),
                    route_rules=[
                        ComputeRegionUrlMapPathMatcherRouteRules(
                            priority=CANARY_ROUTE_PRIORITY,
                            service=canary.id,
                            match_rules=[
                                ComputeRegionUrlMapPathMatcherRouteRulesMatchRules(
                                    prefix_match="/", header_matches=[header]
                                )
                            ],
                        )
                    ],
                )
            ],
        )

    def _rule(self, plan: Rule, settings: EndpointSettings) -> ComputeRegionSecurityPolicyRules:
        if plan.expression is not None:
            match = ComputeRegionSecurityPolicyRulesMatch(
                expr=ComputeRegionSecurityPolicyRulesMatchExpr(expression=plan.expression)
            )
        else:
            match = ComputeRegionSecurityPolicyRulesMatch(
                versioned_expr="SRC_IPS_V1",
                config=ComputeRegionSecurityPolicyRulesMatchConfig(
                    src_ip_ranges=list(plan.src_ip_ranges)
                ),
            )
        rate_limit = None
        if plan.action == "throttle":
            rate_limit = ComputeRegionSecurityPolicyRulesRateLimitOptions(
                conform_action="allow",
                exceed_action="deny(429)",
                enforce_on_key="IP",
                rate_limit_threshold=ComputeRegionSecurityPolicyRulesRateLimitOptionsRateLimitThreshold(
                    count=settings.rate_limit_per_minute, interval_sec=60
                ),
            )
        return ComputeRegionSecurityPolicyRules(
            priority=plan.priority,
            action=plan.action,
            description=literal(plan.description),
            match=match,
            rate_limit_options=rate_limit,
            preview=plan.preview or None,
        )

    def _forwarding_rule(
        self, scheme: str, target: str, port: int, settings: EndpointSettings
    ) -> None:
        ComputeForwardingRule(
            self,
            f"{scheme}-forwarding-rule",
            name=names.forwarding_rule_name(scheme),
            region=settings.region,
            description=f"Internal inference load balancer, {scheme.upper()} on port {port}",
            load_balancing_scheme=names.SCHEME,
            target=target,
            ip_address=self.address.address,
            ip_protocol="TCP",
            port_range=str(port),
            network=self.network.self_link,
            subnetwork=self.subnet.self_link,
            network_tier="PREMIUM",
            allow_global_access=settings.global_access or None,
            # The regional proxies run in the proxy-only subnet: without it the rule is refused.
            depends_on=[self.proxy_subnet] if self.proxy_subnet is not None else None,
        )

    def _private_zone(self, settings: EndpointSettings) -> None:
        """DOMAIN resolves to the internal address inside NETWORK only."""
        self.private_zone = DnsManagedZone(
            self, "private-zone", name=names.PRIVATE_ZONE_NAME, dns_name=f"{settings.domain}.",
            visibility="private", description="The internal inference endpoint's name inside the VPC",
            private_visibility_config=DnsManagedZonePrivateVisibilityConfig(
                networks=[DnsManagedZonePrivateVisibilityConfigNetworks(network_url=self.network.self_link)]
            ),
        )  # fmt: skip
        DnsRecordSet(
            self, "a-record", managed_zone=self.private_zone.name, name=self.private_zone.dns_name,
            type="A", ttl=names.DNS_TTL, rrdatas=[self.address.address],
        )  # fmt: skip


def _project_and_name(network: str, project: str) -> tuple[str, str]:
    """A network's project and name from NETWORK: a name (the stack's project) or a self link."""
    if "/" not in network:
        return project, network
    parts = network.split("/")
    return parts[parts.index("projects") + 1], parts[-1]


def internal_outputs(stack: Construct, edge: InternalEdge) -> None:
    """What a user needs after deploying the private endpoint, beside the stack's common outputs."""
    TerraformOutput(stack, "internal_network", value=edge.network.self_link)
    if edge.dns_authorization is not None:
        record = edge.dns_authorization.dns_resource_record.get(0)
        # Added by the user to the public zone of DOMAIN: the certificate is issued once it resolves.
        TerraformOutput(
            stack,
            "dns_authorization_record",
            value=Fn.format("%s %s %s", [record.name, record.type, record.data]),
        )
