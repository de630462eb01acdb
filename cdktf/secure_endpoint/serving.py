"""The serving side: the Cloud Run service, its identity, and the NEG the load balancer points at."""

from cdktn import TerraformResourceLifecycle
from cdktn_provider_google.cloud_run_v2_service import (
    CloudRunV2Service,
    CloudRunV2ServiceTemplate,
    CloudRunV2ServiceTemplateContainers,
    CloudRunV2ServiceTemplateContainersEnv,
    CloudRunV2ServiceTemplateContainersLivenessProbe,
    CloudRunV2ServiceTemplateContainersLivenessProbeHttpGet,
    CloudRunV2ServiceTemplateContainersPorts,
    CloudRunV2ServiceTemplateContainersResources,
    CloudRunV2ServiceTemplateContainersStartupProbe,
    CloudRunV2ServiceTemplateContainersStartupProbeHttpGet,
    CloudRunV2ServiceTemplateScaling,
)
from cdktn_provider_google.compute_region_network_endpoint_group import (
    ComputeRegionNetworkEndpointGroup,
    ComputeRegionNetworkEndpointGroupCloudRun,
)
from cdktn_provider_google.data_google_artifact_registry_docker_image import (
    DataGoogleArtifactRegistryDockerImage,
)
from cdktn_provider_google.service_account import ServiceAccount
from cdktn_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktn_provider_time.sleep import Sleep
from constructs import Construct

from secure_endpoint import internal_plan
from secure_endpoint.image import artifact_registry_image
from secure_endpoint.plan import (
    DEFAULT_URI_DISABLED,
    INGRESS,
    INVOKER_IAM_DISABLED,
    CANARY,
    SERVICE_NAME,
    STABLE,
    Arm,
)
from secure_endpoint.settings import DEFAULT_MAX_BODY_BYTES, SERVICE_MEMORY_MIB, EndpointSettings

CONTAINER_PORT = 5000
READY_PATH = "/readyz"
HEALTH_PATH = "/healthz"
MODEL_READER_ROLE = "roles/storage.objectViewer"
# A bucket IAM grant usually takes effect within two minutes, at worst seven: the service starts
# only after this wait, and its startup probe then allows Cloud Run's most, 240 s, on top.
MODEL_ACCESS_WAIT = "90s"
STARTUP_PROBE_PERIOD_SECONDS = 10
STARTUP_PROBE_FAILURES = 24
# Where the stack kept each arm's service before its address carried the region.
UNKEYED_SERVICES = {
    STABLE: "google_cloud_run_v2_service.serving_service_90E099A3",
    CANARY: "google_cloud_run_v2_service.serving-canary_service_264F7E1B",
}


class ServingBackend(Construct):
    """One arm's inference service (the stable model, or the canary), reachable only through the
    load balancer. The canary is this construct again with its own Arm: names suffixed `-canary`.

        service account ── objectViewer on the model's bucket (not storage.admin on the project)
              │                   │
              │                   ▼ a new grant restarts
              │          time_sleep (IAM propagation) ── the service waits for it
              ▼ runs as
        Cloud Run v2 service "inference" ── ingress: internal + load balancer only, run.app URL
              ▲  (its address keyed by        closed, invoker IAM check off (ingress is the gate);
              │   region: a new REGION adds   image pinned by digest (a tag resolved at plan)
              │   one, then the old goes)
              │ points at
        serverless NEG "inference-neg-REGION" (created before the old one goes; names the
              service by value, not by reference) ──► `self.neg`

    The canary's service account reads the canary model's bucket, granted and waited for the same
    way, and its service runs `image` when given: the stable arm's, pinned once.

    Outputs: `arm`, `service`, `service_account`, `model_access_wait`, `neg`, `container_image`,
    `ready` (what a backend service sending to this arm must depend on).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: EndpointSettings,
        arm: Arm,
        image: str | None = None,
    ):
        super().__init__(scope, id)
        self.arm = arm

        self.service_account = ServiceAccount(
            self,
            "service-account",
            account_id=arm.account_id,
            display_name=f"{arm.service_name} Cloud Run service",
            description="Runs the inference service; reads the model and nothing else",
        )

        self.model_reader = StorageBucketIamMember(
            self,
            "model-reader",
            bucket=arm.model_bucket,
            role=MODEL_READER_ROLE,
            member=self.service_account.member,
        )
        # Its id changes with a new grant (another bucket, another account): the wait runs again.
        self.model_access_wait = Sleep(
            self,
            "model-access-wait",
            create_duration=MODEL_ACCESS_WAIT,
            triggers={"model_reader": self.model_reader.id},
        )

        self.image = None
        self.container_image = image if image is not None else self._pinned_image(settings.image)
        # Keyed by region: a new REGION is a new service beside the old one, not a replacement
        # of it (which Terraform would do by deleting the old one first, the backend still on it).
        self.service = CloudRunV2Service(
            self,
            f"service-{settings.region}",
            name=arm.service_name,
            location=settings.region,
            description="Inference endpoint behind the load balancer and Cloud Armor",
            ingress=internal_plan.ingress(settings) or INGRESS,
            # Callers are anonymous clients of the load balancer: the gate is ingress plus Cloud
            # Armor, not IAM. Unlike an allUsers binding, this works under domain-restricted sharing.
            invoker_iam_disabled=INVOKER_IAM_DISABLED,
            # A canary goes away at promotion: protecting it would make that apply fail.
            deletion_protection=settings.deletion_protection and arm.role == STABLE,
            # With ingress "internal and load balancer", the run.app URL still answers the
            # project's VPC networks, its other load balancers and Google services such as Pub/Sub
            # pushes, none of which pass Cloud Armor.
            default_uri_disabled=DEFAULT_URI_DISABLED,
            depends_on=[self.model_access_wait],
            template=CloudRunV2ServiceTemplate(
                service_account=self.service_account.email,
                max_instance_request_concurrency=settings.concurrency,
                timeout="30s",
                scaling=CloudRunV2ServiceTemplateScaling(
                    min_instance_count=settings.min_instances,
                    max_instance_count=settings.max_instances,
                ),
                containers=[
                    CloudRunV2ServiceTemplateContainers(
                        name=SERVICE_NAME,
                        image=self.container_image,
                        ports=CloudRunV2ServiceTemplateContainersPorts(container_port=CONTAINER_PORT),
                        env=[
                            CloudRunV2ServiceTemplateContainersEnv(name="MODEL_URI", value=arm.model_uri),
                            CloudRunV2ServiceTemplateContainersEnv(
                                name="GOOGLE_CLOUD_PROJECT", value=settings.project_id
                            ),
                            # Only when asked for: a stack without it stays what it was.
                            *(
                                [CloudRunV2ServiceTemplateContainersEnv(
                                    name="PREDICTION_LOG_RATE", value=f"{settings.prediction_log_rate:g}"
                                )]
                                if settings.prediction_log_rate
                                else []
                            ),
                            *(
                                [CloudRunV2ServiceTemplateContainersEnv(
                                    name="MAX_BODY_BYTES", value=str(settings.max_body_bytes)
                                )]
                                if settings.max_body_bytes != DEFAULT_MAX_BODY_BYTES
                                else []
                            ),
                        ],
                        resources=CloudRunV2ServiceTemplateContainersResources(
                            # CPU only while serving: the service does no background work, and
                            # request-based billing is what a scale-to-zero endpoint wants.
                            cpu_idle=True,
                            startup_cpu_boost=True,
                            limits={"cpu": "1", "memory": f"{SERVICE_MEMORY_MIB}Mi"},
                        ),
                        # /readyz loads the model, so an instance takes traffic only once it can answer.
                        startup_probe=CloudRunV2ServiceTemplateContainersStartupProbe(
                            http_get=CloudRunV2ServiceTemplateContainersStartupProbeHttpGet(path=READY_PATH),
                            period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
                            timeout_seconds=5,
                            failure_threshold=STARTUP_PROBE_FAILURES,
                        ),
                        liveness_probe=CloudRunV2ServiceTemplateContainersLivenessProbe(
                            http_get=CloudRunV2ServiceTemplateContainersLivenessProbeHttpGet(path=HEALTH_PATH),
                            period_seconds=15,
                            timeout_seconds=2,
                            failure_threshold=3,
                        ),
                    )
                ],
            ),
        )

        # State from before the key moves to the key of the region it is in: with REGION changed
        # in the same deploy, Terraform would move it and then replace it, deleting it first.
        self.service.move_from_id(UNKEYED_SERVICES[arm.role])

        # What a backend service waits for before the load balancer may send this arm a request:
        # the service, whose creation ends only once its first revision passed the startup probe,
        # and the IAM wait the service itself started after (ArmoredEdge orders on both).
        self.ready = [self.service, self.model_access_wait]

        # A new REGION replaces the NEG while the backend service still uses the old one: the new
        # one must exist first (under another name) for the backend service to move onto it.
        # Not wired to the service by reference, unlike the rest: Terraform hands
        # create_before_destroy on to whatever the NEG depends on, and a replaced service (tainted
        # after a failed first revision) would then be created again under its own name before
        # the old one goes, which the API refuses (409). A serverless NEG may name a service that
        # does not exist yet.
        self.neg = ComputeRegionNetworkEndpointGroup(
            self,
            "neg",
            name=arm.neg_name(settings.region),
            region=settings.region,
            network_endpoint_type="SERVERLESS",
            cloud_run=ComputeRegionNetworkEndpointGroupCloudRun(service=arm.service_name),
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )

    def _pinned_image(self, image: str) -> str:
        self.image, pinned = pinned_image(self, image)
        return pinned


def pinned_image(
    scope: Construct, image: str
) -> tuple[DataGoogleArtifactRegistryDockerImage | None, str]:
    """The image by digest: as given, or a tag in Artifact Registry resolved when planned (the
    data source that resolves it, under `scope` as `image`, and its digest reference)."""
    tagged = artifact_registry_image(image)
    if tagged is None:
        return None, image
    resolved = DataGoogleArtifactRegistryDockerImage(
        scope,
        "image",
        project=tagged.project,
        location=tagged.location,
        repository_id=tagged.repository,
        image_name=tagged.image_name,
    )
    return resolved, resolved.self_link
