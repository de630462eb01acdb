"""The stack: provider, state, the serving side and the edge, and what a user needs to know after."""

from cdktn import Fn, GcsBackend, TerraformOutput, TerraformStack
from cdktn_provider_google.provider import GoogleProvider
from cdktn_provider_time.provider import TimeProvider
from constructs import Construct

from secure_endpoint.edge import ArmoredEdge
from secure_endpoint.internal_edge import InternalEdge, internal_outputs
from secure_endpoint.monitoring import Monitoring
from secure_endpoint.plan import CANARY_HEADER, CANARY_HEADER_VALUE, plan_arms
from secure_endpoint.serving import ServingBackend
from secure_endpoint.settings import EndpointSettings
from secure_endpoint.training_job import TrainingJob

STATE_PREFIX = "inference-on-secure-cloud-run"
SEED_REQUEST = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


class SecureEndpointStack(TerraformStack):
    """ServingBackend (Cloud Run + NEG), once per arm, composed with ArmoredEdge (load balancer +
    Cloud Armor). The canary arm, when set, runs the image the stable arm pinned."""

    def __init__(self, scope: Construct, id: str, *, settings: EndpointSettings):
        super().__init__(scope, id)
        google = GoogleProvider(self, "google", project=settings.project_id, region=settings.region)
        TimeProvider(self, "time")
        if settings.state_bucket:
            GcsBackend(self, bucket=settings.state_bucket, prefix=STATE_PREFIX)

        stable, *others = plan_arms(settings)
        self.serving = ServingBackend(self, "serving", settings=settings, arm=stable)
        self.servings = [self.serving] + [
            ServingBackend(
                self, f"serving{arm.suffix}", settings=settings, arm=arm,
                image=self.serving.container_image,
            )  # fmt: skip
            for arm in others
        ]
        if settings.internal:
            self.edge = InternalEdge(self, "internal-edge", settings=settings, servings=self.servings, ga=google)
            internal_outputs(self, self.edge)
        else:
            self.edge = ArmoredEdge(self, "edge", settings=settings, servings=self.servings)
        # The job gates against the stable arm's model: promoting a canary is a deploy, so the
        # job's MODEL_URI moves with it.
        self.training = None
        if settings.training is not None:
            self.training = TrainingJob(
                self, "training", training=settings.training, region=settings.region,
                model_uri=stable.model_uri, deletion_protection=settings.deletion_protection,
            )  # fmt: skip
        # Settings refuse ALERT_EMAIL with EXPOSURE=internal: these watch the public edge.
        self.monitoring = (
            Monitoring(self, "monitoring", settings=settings, edge=self.edge, servings=self.servings, request=SEED_REQUEST)
            if settings.alert_email
            else None
        )

        endpoint = f"{self.edge.url}/inference/"
        TerraformOutput(self, "load_balancer_ip", value=self.edge.address.address)
        if self.edge.address_v6 is not None:
            TerraformOutput(self, "load_balancer_ipv6", value=self.edge.address_v6.address)
        TerraformOutput(self, "endpoint_url", value=endpoint)
        # Built by Terraform's own jsonencode: a literal JSON body here would carry double quotes
        # that `cdktf synth --hcl` does not escape, and the HCL would not parse.
        TerraformOutput(
            self,
            "curl",
            value=Fn.format(
                "curl -X POST %s -H 'Content-Type: application/json' -d '%s'",
                [endpoint, Fn.jsonencode(SEED_REQUEST)],
            ),
        )
        TerraformOutput(self, "service_name", value=self.serving.service.name)
        if others:
            canary = self.servings[1]
            TerraformOutput(self, "canary_service_name", value=canary.service.name)
            TerraformOutput(
                self,
                "canary_curl",
                value=Fn.format(
                    "curl -X POST %s -H '%s: %s' -H 'Content-Type: application/json' -d '%s'",
                    [endpoint, CANARY_HEADER, CANARY_HEADER_VALUE, Fn.jsonencode(SEED_REQUEST)],
                ),
            )
        TerraformOutput(self, "security_policy_name", value=self.edge.policy.name)
        if self.training is not None:
            TerraformOutput(self, "training_job_name", value=self.training.job.name)
