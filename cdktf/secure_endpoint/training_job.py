"""The training job on Cloud Run Jobs, what it may touch, and what starts it on a schedule."""

from cdktn_provider_google.cloud_run_v2_job import (
    CloudRunV2Job,
    CloudRunV2JobTemplate,
    CloudRunV2JobTemplateTemplate,
    CloudRunV2JobTemplateTemplateContainers,
    CloudRunV2JobTemplateTemplateContainersEnv,
    CloudRunV2JobTemplateTemplateContainersResources,
)
from cdktn_provider_google.cloud_run_v2_job_iam_member import CloudRunV2JobIamMember
from cdktn_provider_google.cloud_scheduler_job import (
    CloudSchedulerJob,
    CloudSchedulerJobHttpTarget,
    CloudSchedulerJobHttpTargetOauthToken,
)
from cdktn_provider_google.service_account import ServiceAccount
from cdktn_provider_google.storage_bucket_iam_member import (
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
)
from constructs import Construct

from secure_endpoint.grammar import GCS_SCHEME, bucket_of
from secure_endpoint.serving import pinned_image
from secure_endpoint.training_settings import MAX_RETRIES, SCHEDULE_TIME_ZONE, TrainingSettings
from training.job_names import JOB_NAME, SUMMARIES_PREFIX

# What the job writes under MODEL_BUCKET: published versions (training/publish.py) and each
# attempt's summary (training/job_names.py).
MODELS_PREFIX = "models/"
WRITTEN_PREFIXES = (MODELS_PREFIX, SUMMARIES_PREFIX)
# storage.objects.create (and multipart uploads) only: replacing an object needs
# storage.objects.delete as well, which neither role holds, so a published version stays as it is.
CREATOR_ROLE = "roles/storage.objectCreator"
# storage.objects.get and .list; listing is judged on the bucket, not an object, so under a
# condition on object names it is never granted.
READER_ROLE = "roles/storage.objectViewer"
# run.jobs.run (and run.routes.invoke, which a job has no use for) on this job only: the narrowest
# predefined role that starts an execution. roles/run.jobsExecutor adds cancelling executions;
# running with overrides needs run.jobs.runWithOverrides, which neither holds.
RUNNER_ROLE = "roles/run.invoker"
JOB_ACCOUNT_ID = f"{JOB_NAME}-run"
SCHEDULER_ACCOUNT_ID = f"{JOB_NAME}-sched"
SCHEDULE_NAME = f"{JOB_NAME}-schedule"
CONTAINER_NAME = "train"


def object_resource(bucket: str, name: str = "") -> str:
    """The name an IAM condition sees for an object (or, with `name` a prefix, for those under it)."""
    return f"projects/_/buckets/{bucket}/objects/{name}"


def cel_string(text: str) -> str:
    """A CEL string literal in single quotes: `cdktn synth --hcl` writes double quotes unescaped.
    Bucket and plain object names (secure_endpoint.grammar) hold neither quote nor backslash."""
    if "'" in text or "\\" in text:
        raise ValueError(f"expected a bucket or plain object name, got {text!r}")
    return f"'{text}'"


def under_prefixes(bucket: str, prefixes: tuple[str, ...]) -> str:
    """CEL: the request's object lies under one of the prefixes of `bucket`."""
    return " || ".join(
        f"resource.name.startsWith({cel_string(object_resource(bucket, prefix))})" for prefix in prefixes
    )


def is_object(uri: str) -> str:
    bucket = bucket_of(uri)
    name = uri.removeprefix(f"{GCS_SCHEME}{bucket}/")
    return f"resource.name == {cel_string(object_resource(bucket, name))}"


class TrainingJob(Construct):
    """`python -m training.job` on Cloud Run Jobs: trains, gates against the stable arm's model,
    publishes a new version when it is not worse.

        service account "inference-train-run"
              ├── objectCreator on MODEL_BUCKET, condition: objects under models/ or jobs/
              ├── objectViewer on MODEL_BUCKET, same condition (same-bytes check, the gate's
              │   evaluation); no list, no delete, so nothing published can be replaced
              ├── objectViewer on MODEL_URI's bucket, condition: that one object (when it lies
              │   outside MODEL_BUCKET's models/)
              └── objectViewer on TRAIN_DATA_BUCKET (when set)
              ▼ runs as
        Cloud Run v2 job "inference-train" ── image by digest (TRAIN_IMAGE, a tag resolved at
              ▲                              plan), 1 task, max_retries 1, MODEL_URI = the
              │ run.invoker on this job only      stable arm's model
        service account "inference-train-sched" ◄── Cloud Scheduler job (TRAIN_SCHEDULE): POST
                                                    …/jobs/inference-train:run with its OAuth token

    Outputs: `job`, `service_account`, `grants`, `image`; with a schedule `scheduler`,
    `scheduler_account`, `runner`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        training: TrainingSettings,
        region: str,
        model_uri: str,
        deletion_protection: bool,
    ):
        super().__init__(scope, id)
        self.service_account = ServiceAccount(
            self,
            "service-account",
            account_id=JOB_ACCOUNT_ID,
            display_name=f"{JOB_NAME} Cloud Run job",
            description="Runs the training job; creates model versions, never replaces one",
        )
        member = self.service_account.member
        condition = under_prefixes(training.model_bucket, WRITTEN_PREFIXES)
        self.grants = [
            StorageBucketIamMember(
                self,
                "model-creator",
                bucket=training.model_bucket,
                role=CREATOR_ROLE,
                member=member,
                condition=StorageBucketIamMemberCondition(
                    title="create-under-models-and-jobs",
                    description="New objects under models/ and jobs/ only",
                    expression=condition,
                ),
            ),
            StorageBucketIamMember(
                self,
                "model-reader",
                bucket=training.model_bucket,
                role=READER_ROLE,
                member=member,
                condition=StorageBucketIamMemberCondition(
                    title="read-under-models-and-jobs",
                    description="Objects under models/ and jobs/ only, by name (no listing)",
                    expression=condition,
                ),
            ),
        ]
        if not model_uri.startswith(f"{GCS_SCHEME}{training.model_bucket}/{MODELS_PREFIX}"):
            self.grants.append(
                StorageBucketIamMember(
                    self,
                    "production-reader",
                    bucket=bucket_of(model_uri),
                    role=READER_ROLE,
                    member=member,
                    condition=StorageBucketIamMemberCondition(
                        title="read-the-production-model",
                        description="The model MODEL_URI names, for the gate",
                        expression=is_object(model_uri),
                    ),
                )
            )
        if training.data_bucket:
            self.grants.append(
                StorageBucketIamMember(
                    self, "data-reader", bucket=training.data_bucket, role=READER_ROLE, member=member
                )
            )

        self.image = None
        env = {"MODEL_URI": model_uri, **training.job_environment()}
        self.job = CloudRunV2Job(
            self,
            "job",
            name=JOB_NAME,
            location=region,
            # The provider's default is true, which would make `make destroy` fail on the job.
            deletion_protection=deletion_protection,
            template=CloudRunV2JobTemplate(
                task_count=1,
                template=CloudRunV2JobTemplateTemplate(
                    service_account=self.service_account.email,
                    timeout=f"{training.timeout_seconds}s",
                    max_retries=MAX_RETRIES,
                    containers=[
                        CloudRunV2JobTemplateTemplateContainers(
                            name=CONTAINER_NAME,
                            image=self._pinned_image(training.image),
                            env=[
                                CloudRunV2JobTemplateTemplateContainersEnv(name=name, value=value)
                                for name, value in env.items()
                            ],
                            resources=CloudRunV2JobTemplateTemplateContainersResources(
                                limits={"cpu": str(training.cpu), "memory": training.memory},
                            ),
                        )
                    ],
                ),
            ),
            depends_on=self.grants,
        )

        self.scheduler = self.scheduler_account = self.runner = None
        if training.schedule:
            self._schedule(training.schedule, region)

    def _schedule(self, schedule: str, region: str) -> None:
        self.scheduler_account = ServiceAccount(
            self,
            "scheduler-account",
            account_id=SCHEDULER_ACCOUNT_ID,
            display_name=f"{JOB_NAME} schedule",
            description="Starts the training job on its schedule; may run that job and nothing else",
        )
        self.runner = CloudRunV2JobIamMember(
            self,
            "scheduler-runs-the-job",
            name=self.job.name,
            location=self.job.location,
            role=RUNNER_ROLE,
            member=self.scheduler_account.member,
        )
        self.scheduler = CloudSchedulerJob(
            self,
            "schedule",
            name=SCHEDULE_NAME,
            region=region,
            description=f"Starts the Cloud Run job {JOB_NAME}",
            schedule=schedule,
            time_zone=SCHEDULE_TIME_ZONE,
            http_target=CloudSchedulerJobHttpTarget(
                # The Run Admin API v2's jobs.run: one execution, as `make train-job` starts it.
                uri=(
                    f"https://run.googleapis.com/v2/projects/{self.job.project}/locations/"
                    f"{self.job.location}/jobs/{self.job.name}:run"
                ),
                http_method="POST",
                oauth_token=CloudSchedulerJobHttpTargetOauthToken(
                    service_account_email=self.scheduler_account.email,
                ),
            ),
            depends_on=[self.runner],
        )

    def _pinned_image(self, image: str) -> str:
        self.image, pinned = pinned_image(self, image)
        return pinned
