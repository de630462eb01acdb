"""What a brand-new project needs before the endpoint can be deployed: `make bootstrap`."""

from cdktn import (
    DataResource,
    Fn,
    GcsBackend,
    Postcondition,
    TerraformOutput,
    TerraformResourceLifecycle,
    TerraformStack,
)
from cdktn_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktn_provider_google.artifact_registry_repository_iam_member import (
    ArtifactRegistryRepositoryIamMember,
)
from cdktn_provider_google.project_iam_member import ProjectIamMember
from cdktn_provider_google.project_service import ProjectService
from cdktn_provider_google.provider import GoogleProvider
from cdktn_provider_google.service_account import ServiceAccount
from cdktn_provider_google.storage_bucket import (
    StorageBucket,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketVersioning,
)
from cdktn_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktn_provider_time.provider import TimeProvider
from cdktn_provider_time.sleep import Sleep
from constructs import Construct

from secure_endpoint.bootstrap_settings import BootstrapSettings
from secure_endpoint.internal_plan import extra_apis
from secure_endpoint.settings import REPOSITORY

BOOTSTRAP_STATE_PREFIX = "inference-on-secure-cloud-run-bootstrap"
BUILD_ACCOUNT_ID = "inference-build"
# Sources staged for a build are read once, when it starts.
BUILD_SOURCE_DAYS = 7
# A freshly enabled API keeps answering "has not been used or is disabled" for a while, and the
# provider does not retry that error: the first calls to the new APIs wait this long.
APIS_WAIT = "60s"

# Every API the two stacks and the build call, and why.
APIS = {
    "serviceusage.googleapis.com": "enables the others",
    "cloudresourcemanager.googleapis.com": "project IAM grants",
    "iam.googleapis.com": "the build's and the service's accounts",
    "storage.googleapis.com": "model, state and build source buckets",
    "artifactregistry.googleapis.com": "the image repository",
    "cloudbuild.googleapis.com": "builds the image",
    "logging.googleapis.com": "build and service logs",
    "run.googleapis.com": "the inference service and the training job",
    "cloudscheduler.googleapis.com": "starts the training job on TRAIN_SCHEDULE",
    "compute.googleapis.com": "load balancer, Cloud Armor, serverless NEG, certificate",
}
# Enabled only with ALERT_EMAIL: uptime checks, alert policies, the channel and the dashboard
# (secure_endpoint.monitoring). Logging, which holds the log-based metric, is among APIS already.
MONITORING_APIS = {"monitoring.googleapis.com": "uptime checks, alert policies and the dashboard (ALERT_EMAIL)"}
BUILD_ROLES = {
    "repository": "roles/artifactregistry.writer",
    "project": "roles/logging.logWriter",
    "build_source": "roles/storage.objectViewer",
}


class Bootstrap(Construct):
    """APIs, buckets, the image repository and the account that builds the image.

        google_project_service × 9, more for EXPOSURE=internal with DOMAIN and for ALERT_EMAIL (left enabled on destroy)
              │
        time_sleep 60 s (enablement propagates; again when the list of APIs changes)
              │ every resource below depends on it and on the API it calls
              ▼
        region guard (terraform_data) ── records REGION at the first apply; a later plan with
              │                          another REGION fails before anything is replaced
        model bucket, state bucket ── uniform access, public access prevention enforced,
              │                       versioning, prevent_destroy
        build source bucket ── where `gcloud builds submit` stages sources; they expire
              │
        Artifact Registry repository (Docker, REGION)
              ▲ artifactregistry.writer
        build service account ── logging.logWriter on the project, objectViewer on the sources

    Outputs: `apis`, `apis_ready`, `model_bucket`, `state_bucket`, `build_source_bucket`,
    `repository`, `build_account`, `region_guard`.
    """

    def __init__(self, scope: Construct, id: str, *, settings: BootstrapSettings):
        super().__init__(scope, id)

        self.apis = {
            api: ProjectService(
                self,
                f"api-{api.split('.')[0]}",
                service=api,
                # The project keeps its APIs when this stack goes: the serving stack and
                # anything else in the project may still use them.
                disable_on_destroy=False,
            )
            for api in {
                **APIS,
                **extra_apis(settings.exposure, settings.domain),
                **(MONITORING_APIS if settings.alert_email else {}),
            }
        }
        self.apis_ready = Sleep(
            self,
            "apis-ready",
            create_duration=APIS_WAIT,
            triggers={api: service.id for api, service in self.apis.items()},
            depends_on=list(self.apis.values()),
        )
        storage = self._after("storage.googleapis.com")

        self.region_guard = DataResource(
            self,
            "region-guard",
            input={"region": settings.region},
            lifecycle=TerraformResourceLifecycle(
                # The recorded region stays what the first apply wrote, so a later plan can
                # compare it with REGION: bucket and repository locations cannot change in place.
                ignore_changes=["input"],
                postcondition=[
                    Postcondition(
                        condition=f'${{self.output.region == "{settings.region}"}}',
                        error_message=(
                            f"REGION: this project was bootstrapped in ${{self.output.region}}, "
                            f"got {settings.region}; its buckets and repository cannot move. Keep "
                            f"REGION=${{self.output.region}}."
                        ),
                    )
                ],
            ),
        )

        self.model_bucket = _kept_bucket(self, "model-bucket", settings.model_bucket, settings)
        self.state_bucket = _kept_bucket(self, "state-bucket", settings.state_bucket, settings)
        self.build_source_bucket = StorageBucket(
            self,
            "build-source-bucket",
            name=settings.build_source_bucket,
            location=settings.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            lifecycle_rule=[
                StorageBucketLifecycleRule(
                    action=StorageBucketLifecycleRuleAction(type="Delete"),
                    condition=StorageBucketLifecycleRuleCondition(age=BUILD_SOURCE_DAYS),
                )
            ],
            depends_on=storage,
        )

        self.repository = ArtifactRegistryRepository(
            self,
            "repository",
            repository_id=REPOSITORY,
            location=settings.region,
            format="DOCKER",
            description="Images of the inference service",
            depends_on=self._after("artifactregistry.googleapis.com"),
        )

        # New projects build as the Compute Engine default account, which may hold no role at all
        # where the organisation forbids automatic grants: the build gets its own, with only these.
        self.build_account = ServiceAccount(
            self,
            "build-account",
            account_id=BUILD_ACCOUNT_ID,
            display_name="inference image builds",
            description="Runs cloudbuild.yaml: reads staged sources, pushes the image, writes logs",
            depends_on=self._after("iam.googleapis.com"),
        )
        ArtifactRegistryRepositoryIamMember(
            self,
            "build-pushes-images",
            repository=self.repository.name,
            location=self.repository.location,
            role=BUILD_ROLES["repository"],
            member=self.build_account.member,
            depends_on=self._after("artifactregistry.googleapis.com"),
        )
        ProjectIamMember(
            self,
            "build-writes-logs",
            project=settings.project_id,
            role=BUILD_ROLES["project"],
            member=self.build_account.member,
            depends_on=self._after("cloudresourcemanager.googleapis.com", "logging.googleapis.com"),
        )
        StorageBucketIamMember(
            self,
            "build-reads-sources",
            bucket=self.build_source_bucket.name,
            role=BUILD_ROLES["build_source"],
            member=self.build_account.member,
            depends_on=storage,
        )

    def _after(self, *apis: str) -> list:
        """The APIs a resource calls, and the wait for their enablement to propagate."""
        return [*(self.apis[api] for api in apis), self.apis_ready]


def _kept_bucket(scope: Bootstrap, id: str, name: str, settings: BootstrapSettings) -> StorageBucket:
    """A bucket whose objects outlive any deploy: versioned, private, never destroyed by Terraform."""
    return StorageBucket(
        scope,
        id,
        name=name,
        location=settings.region,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=StorageBucketVersioning(enabled=True),
        lifecycle=TerraformResourceLifecycle(prevent_destroy=True),
        depends_on=scope._after("storage.googleapis.com"),
    )


class BootstrapStack(TerraformStack):
    """The bootstrap on its own state: local at first, then in the state bucket it made."""

    def __init__(self, scope: Construct, id: str, *, settings: BootstrapSettings):
        super().__init__(scope, id)
        GoogleProvider(self, "google", project=settings.project_id, region=settings.region)
        TimeProvider(self, "time")
        if settings.state_in_bucket:
            GcsBackend(self, bucket=settings.state_bucket, prefix=BOOTSTRAP_STATE_PREFIX)

        self.bootstrap = Bootstrap(self, "bootstrap", settings=settings)
        made = self.bootstrap

        repository = Fn.format(
            "%s-docker.pkg.dev/%s/%s",
            [made.repository.location, made.repository.project, made.repository.repository_id],
        )
        TerraformOutput(self, "state_bucket", value=made.state_bucket.name)
        TerraformOutput(self, "model_bucket", value=made.model_bucket.name)
        TerraformOutput(self, "build_source_bucket", value=made.build_source_bucket.name)
        TerraformOutput(self, "repository", value=repository)
        TerraformOutput(self, "build_service_account", value=made.build_account.email)
        TerraformOutput(
            self,
            "next_steps",
            value=Fn.format(
                "export TF_STATE_BUCKET=%s MODEL_URI=gs://%s/iris/model.onnx\n"
                "gcloud builds submit --config cloudbuild.yaml --substitutions _REGION=%s "
                "--gcs-source-staging-dir gs://%s/source .\n"
                "make upload\n"
                "make deploy",
                [
                    made.state_bucket.name,
                    made.model_bucket.name,
                    made.repository.location,
                    made.build_source_bucket.name,
                ],
            ),
        )
