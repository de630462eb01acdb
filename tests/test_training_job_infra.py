"""The training job as synthesized (TRAIN_JOB=true): the job, its grants, its schedule.

The storage emulator enforces no IAM, so what the job's account may do is checked here, on the
Terraform JSON: exact roles, exact conditions, and nothing else granted to either account.
"""

import re

import pytest

from secure_endpoint.settings import EndpointSettings, SettingsError
from secure_endpoint.training_settings import (
    DEFAULT_ENTRYPOINT,
    ENTRYPOINT_PATTERN,
    METRICS,
    MODEL_NAME_PATTERN,
)
from tests.infra import BASE_ENV
from tests.resource_addresses import addresses
from training.job_names import JOB_NAME

JOB = {"TRAIN_JOB": "true"}
# MODEL_URI outside models/ (BASE_ENV's), with a schedule, a data bucket and the gate's settings.
FULL = {
    **JOB, "TRAIN_SCHEDULE": "0 3 * * 1", "TRAIN_DATA_BUCKET": "p-data", "MIN_SCORE": "0.9",
    "MAX_REGRESSION": "0.02", "METRIC": "accuracy", "MODEL_NAME": "iris", "TRAIN_CPU": "2",
    "TRAIN_MEMORY": "8Gi", "TRAIN_TIMEOUT": "1800",
}  # fmt: skip
PUBLISHED_URI = "gs://demo-models/models/iris/cd827946f6342979/model.onnx"
DIGEST = "sha256:" + "ab" * 32
BUCKET_ROLES = ("google_storage_bucket_iam_member", "google_storage_bucket_iam_binding")
# In single quotes: `cdktn synth --hcl` would write double quotes unescaped.
MODELS_AND_JOBS = (
    "resource.name.startsWith('projects/_/buckets/demo-models/objects/models/') || "
    "resource.name.startsWith('projects/_/buckets/demo-models/objects/jobs/')"
)


def reference(synthesized, kind: str, name: str, attribute: str) -> str:
    (key,) = [k for k in synthesized.resources(kind) if name in k]
    return f"${{{kind}.{key}.{attribute}}}"


def account_member(synthesized, account_id: str) -> str:
    (key,) = [k for k, r in synthesized.resources("google_service_account").items() if r["account_id"] == account_id]
    return f"${{google_service_account.{key}.member}}"


def grants_to(synthesized, member: str) -> list[tuple[str, dict]]:
    """Every IAM grant of any kind, on anything, that names `member`."""
    found = []
    for kind, named in synthesized.json.get("resource", {}).items():
        if "_iam_" not in kind:
            continue
        for grant in named.values():
            if grant.get("member") == member or member in grant.get("members", []):
                found.append((kind, grant))
    return found


def env_of(job: dict) -> dict[str, str]:
    (container,) = job["template"]["template"]["containers"]
    return {variable["name"]: variable["value"] for variable in container["env"]}


def test_the_entry_point_and_the_gate_are_checked_as_the_job_checks_them():
    job = pytest.importorskip("training.job")
    from training.evaluate import ALL_METRICS

    assert DEFAULT_ENTRYPOINT == job.DEFAULT_ENTRYPOINT
    assert ENTRYPOINT_PATTERN.pattern == job._ENTRYPOINT.pattern
    assert MODEL_NAME_PATTERN.pattern == job.MODEL_NAME_PATTERN.pattern
    assert METRICS == ALL_METRICS


def test_without_train_job_there_is_no_job_nor_schedule(synth):
    stack = synth()

    assert not stack.resources("google_cloud_run_v2_job")
    assert not stack.resources("google_cloud_scheduler_job")
    assert "training_job_name" not in stack.json["output"]


@pytest.mark.parametrize("env", [JOB, FULL], ids=["job", "job-and-schedule"])
def test_the_job_only_adds_to_the_stack(synth, env):
    before, after = addresses(synth().json), addresses(synth(**env).json)

    for section in before:
        assert set(before[section]) <= set(after[section]), section


def test_the_job_runs_the_training_image_by_digest_once_with_one_retry(synth):
    stack = synth(**JOB)
    job = stack.one("google_cloud_run_v2_job")
    (container,) = job["template"]["template"]["containers"]
    image = stack.json["data"]["google_artifact_registry_docker_image"]

    assert job["name"] == JOB_NAME == "inference-train"
    assert job["location"] == "asia-northeast1"
    assert job["deletion_protection"] is False
    assert job["template"]["task_count"] == 1
    assert job["template"]["template"]["max_retries"] == 1
    assert job["template"]["template"]["timeout"] == "3600s"
    assert job["template"]["template"]["service_account"] == reference(
        stack, "google_service_account", "training_service-account", "email"
    )
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    (key,) = [k for k, d in image.items() if d["image_name"] == "inference-train:latest"]
    assert image[key]["repository_id"] == "inference-on-secure-cloud-run"
    assert container["image"] == f"${{data.google_artifact_registry_docker_image.{key}.self_link}}"
    assert stack.json["output"]["training_job_name"]["value"] == reference(
        stack, "google_cloud_run_v2_job", "training_job", "name"
    )


def test_an_image_given_by_digest_is_used_as_it_is(synth):
    pinned = f"asia-northeast1-docker.pkg.dev/p/r/inference-train@{DIGEST}"
    stack = synth(**JOB, TRAIN_IMAGE=pinned)
    (container,) = stack.one("google_cloud_run_v2_job")["template"]["template"]["containers"]

    assert container["image"] == pinned
    assert all(d["image_name"] != "inference-train:latest" for d in stack.json.get("data", {}).get("google_artifact_registry_docker_image", {}).values())


def test_the_job_is_told_its_bucket_the_production_model_and_only_the_gate_settings_given(synth):
    assert env_of(synth(**JOB).one("google_cloud_run_v2_job")) == {
        "MODEL_URI": BASE_ENV["MODEL_URI"],
        "MODEL_BUCKET": "demo-models",
        "TRAIN_ENTRYPOINT": DEFAULT_ENTRYPOINT,
    }
    job = synth(**FULL, MODEL_BUCKET="p-models").one("google_cloud_run_v2_job")
    assert env_of(job) == {
        "MODEL_URI": BASE_ENV["MODEL_URI"],
        "MODEL_BUCKET": "p-models",
        "TRAIN_ENTRYPOINT": DEFAULT_ENTRYPOINT,
        "MODEL_NAME": "iris",
        "METRIC": "accuracy",
        "MIN_SCORE": "0.9",
        "MAX_REGRESSION": "0.02",
    }
    assert job["template"]["template"]["timeout"] == "1800s"
    (container,) = job["template"]["template"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}


def test_the_job_gates_against_the_stable_arm_not_the_canary(synth):
    canary = {"CANARY_MODEL_URI": PUBLISHED_URI, "CANARY_PERCENT": "5"}

    assert env_of(synth(**JOB, **canary).one("google_cloud_run_v2_job"))["MODEL_URI"] == BASE_ENV["MODEL_URI"]


def test_the_jobs_account_may_create_and_read_under_models_and_jobs_only(synth):
    stack = synth(**JOB)
    member = account_member(stack, "inference-train-run")
    grants = {grant["role"]: grant for kind, grant in grants_to(stack, member) if grant.get("condition", {}).get("title", "").endswith("models-and-jobs")}

    assert set(grants) == {"roles/storage.objectCreator", "roles/storage.objectViewer"}
    for grant in grants.values():
        assert grant["bucket"] == "demo-models"
        assert grant["condition"]["expression"] == MODELS_AND_JOBS


def test_the_jobs_account_reads_the_production_model_by_name_when_it_lies_elsewhere(synth):
    stack = synth(**JOB)
    member = account_member(stack, "inference-train-run")
    (production,) = [g for _, g in grants_to(stack, member) if g.get("condition", {}).get("title") == "read-the-production-model"]

    assert production["role"] == "roles/storage.objectViewer"
    assert production["bucket"] == "demo-models"
    assert production["condition"]["expression"] == "resource.name == 'projects/_/buckets/demo-models/objects/model.onnx'"

    published = synth(**JOB, MODEL_URI=PUBLISHED_URI)
    titles = [g.get("condition", {}).get("title") for _, g in grants_to(published, account_member(published, "inference-train-run"))]
    assert "read-the-production-model" not in titles, "models/ is readable already"


def test_a_production_model_in_another_bucket_is_readable_there_and_nothing_else_of_it(synth):
    stack = synth(**JOB, MODEL_URI="gs://prod-models/iris/model.onnx", MODEL_BUCKET="p-models")
    member = account_member(stack, "inference-train-run")
    grants = grants_to(stack, member)

    assert {g["bucket"] for _, g in grants} == {"p-models", "prod-models"}
    (other,) = [g for _, g in grants if g["bucket"] == "prod-models"]
    assert other["condition"]["expression"] == "resource.name == 'projects/_/buckets/prod-models/objects/iris/model.onnx'"


def test_the_jobs_account_can_neither_administer_nor_delete_nor_list_models(synth):
    stack = synth(**FULL)
    member = account_member(stack, "inference-train-run")
    grants = grants_to(stack, member)

    assert {kind for kind, _ in grants} == {"google_storage_bucket_iam_member"}, "no project, job or account grant"
    for _, grant in grants:
        assert grant["role"] in ("roles/storage.objectCreator", "roles/storage.objectViewer")
        assert "admin" not in grant["role"].lower() and "objectUser" not in grant["role"]
        if grant["bucket"] != "p-data":
            # Without a condition objectViewer would list the bucket; with one on object names,
            # listing (judged on the bucket) is never granted.
            assert grant["condition"]["expression"].startswith("resource.name")
    (data,) = [g for _, g in grants if g["bucket"] == "p-data"]
    assert data["role"] == "roles/storage.objectViewer" and "condition" not in data


def test_no_data_bucket_no_data_grant(synth):
    stack = synth(**JOB)

    assert all(g["bucket"] == "demo-models" for _, g in grants_to(stack, account_member(stack, "inference-train-run")))


def test_the_schedule_starts_the_job_through_the_run_admin_api_with_an_oauth_token(synth):
    stack = synth(**FULL)
    schedule = stack.one("google_cloud_scheduler_job")
    job = lambda attribute: reference(stack, "google_cloud_run_v2_job", "training_job", attribute)  # noqa: E731

    assert schedule["name"] == "inference-train-schedule"
    assert schedule["region"] == "asia-northeast1"
    assert schedule["schedule"] == "0 3 * * 1"
    assert schedule["time_zone"] == "Etc/UTC"
    target = schedule["http_target"]
    assert target["http_method"] == "POST"
    assert target["uri"] == (
        f"https://run.googleapis.com/v2/projects/{job('project')}/locations/{job('location')}/jobs/{job('name')}:run"
    )
    assert target["oauth_token"] == {
        "service_account_email": reference(stack, "google_service_account", "training_scheduler-account", "email")
    }
    assert "oidc_token" not in target


def test_the_schedulers_account_may_run_that_job_and_nothing_else(synth):
    stack = synth(**FULL)
    member = account_member(stack, "inference-train-sched")
    job = lambda attribute: reference(stack, "google_cloud_run_v2_job", "training_job", attribute)  # noqa: E731

    (grant,) = grants_to(stack, member)
    assert grant == ("google_cloud_run_v2_job_iam_member", {
        "name": job("name"), "location": job("location"), "role": "roles/run.invoker", "member": member,
    })  # fmt: skip
    (name,) = stack.resources("google_cloud_run_v2_job_iam_member")
    assert stack.one("google_cloud_scheduler_job")["depends_on"] == [f"google_cloud_run_v2_job_iam_member.{name}"]


def test_no_schedule_no_scheduler_nor_its_account(synth):
    stack = synth(**JOB)

    assert not stack.resources("google_cloud_scheduler_job")
    assert not stack.resources("google_cloud_run_v2_job_iam_member")
    assert "inference-train-sched" not in {r["account_id"] for r in stack.resources("google_service_account").values()}


def refusal(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, **env})
    return list(raised.value.lines)


@pytest.mark.parametrize("cpu", ["0.5", "1.5", "3", "0", "16", "1000m", "two"])
def test_fractions_and_other_cpu_counts_are_refused(cpu):
    (line,) = refusal(**JOB, TRAIN_CPU=cpu)

    assert line == f"TRAIN_CPU: expected whole CPUs, one of 1, 2, 4, 6, 8 (Cloud Run jobs take no fractions), got {cpu!r}"


@pytest.mark.parametrize(
    "cpu, memory, expected",
    [
        ("1", "256Mi", "512Mi to 4Gi"), ("1", "5Gi", "512Mi to 4Gi"), ("2", "9Gi", "512Mi to 8Gi"),
        ("4", "1Gi", "2Gi to 16Gi"), ("4", "17Gi", "2Gi to 16Gi"), ("6", "3Gi", "4Gi to 24Gi"),
        ("8", "2Gi", "4Gi to 32Gi"), ("8", "33Gi", "4Gi to 32Gi"),
    ],
)  # fmt: skip
def test_memory_outside_the_range_of_its_cpu_count_is_refused_naming_both(cpu, memory, expected):
    (line,) = refusal(**JOB, TRAIN_CPU=cpu, TRAIN_MEMORY=memory)

    assert line.startswith(f"TRAIN_MEMORY: expected {expected} with TRAIN_CPU={cpu} ")
    assert line.endswith(f"got {memory}")


@pytest.mark.parametrize("cpu, memory", [("1", "512Mi"), ("1", "4Gi"), ("2", "8Gi"), ("4", "2Gi"), ("6", "24Gi"), ("8", "4096Mi"), ("8", "32Gi")])
def test_memory_within_its_cpu_counts_range_is_taken(cpu, memory):
    training = EndpointSettings.from_env({**BASE_ENV, **JOB, "TRAIN_CPU": cpu, "TRAIN_MEMORY": memory}).training

    assert (training.cpu, training.memory) == (int(cpu), memory)


@pytest.mark.parametrize("memory", ["4G", "4GB", "4 Gi", "0Mi", "1.5Gi", "4gi", "-1Gi"])
def test_memory_not_in_mi_or_gi_is_refused(memory):
    (line,) = refusal(**JOB, TRAIN_MEMORY=memory)

    assert line == f"TRAIN_MEMORY: expected an amount of memory such as 512Mi or 4Gi, got {memory!r}"


@pytest.mark.parametrize(
    "schedule, problem",
    [
        ("0 3 * *", "got 4 field(s)"), ("0 3 * * 1 2026", "got 6 field(s)"), ("@daily", "got 1 field(s)"),
        ("60 3 * * 1", "the minute field '60' is outside 0-59"),
        ("0 24 * * 1", "the hour field '24' is outside 0-23"),
        ("0 3 0 * 1", "the day of month field '0' is outside 1-31"),
        ("0 3 * 13 1", "the month field '13' is outside 1-12"),
        ("0 3 * * 8", "the day of week field '8' is outside 0-7"),
        ("0 3 * * MOON", "the day of week field 'MOON' is outside 0-7"),
        ("*/0 3 * * 1", "the minute field '*/0' is outside 0-59"),
        ("0 3 ? * 1", "the day of month field '?' is not one"),
    ],
)  # fmt: skip
def test_a_schedule_that_is_not_five_cron_fields_is_refused(schedule, problem):
    (line,) = refusal(**JOB, TRAIN_SCHEDULE=schedule)

    assert line.startswith("TRAIN_SCHEDULE: expected a cron schedule of 5 fields")
    assert problem in line


@pytest.mark.parametrize("schedule", ["0 3 * * 1", "*/15 * * * *", "0 9-17/2 1,15 JAN-MAR MON-FRI", "30 2 * * 0,7"])
def test_five_cron_fields_are_taken(schedule):
    assert EndpointSettings.from_env({**BASE_ENV, **JOB, "TRAIN_SCHEDULE": schedule}).training.schedule == schedule


def test_a_schedule_without_the_job_is_refused():
    (line,) = refusal(TRAIN_SCHEDULE="0 3 * * 1")

    assert line == (
        "TRAIN_SCHEDULE: expected only with TRAIN_JOB=true, which makes the job it starts; got "
        "'0 3 * * 1' with TRAIN_JOB unset or false"
    )


def test_every_bad_training_setting_is_named_in_one_run():
    lines = refusal(
        **JOB, TRAIN_CPU="0.5", TRAIN_MEMORY="64Gi", TRAIN_SCHEDULE="daily", METRIC="f1",
        MIN_SCORE="high", MAX_REGRESSION="-1", TRAIN_ENTRYPOINT="train.py", MODEL_NAME="Iris",
        TRAIN_TIMEOUT="30", TRAIN_DATA_BUCKET="Not_A_Bucket", ALLOWED_IP_RANGES="",
    )  # fmt: skip

    named = [re.match(r"[A-Z_]+", line).group() for line in lines]
    assert sorted(named) == sorted([
        "ALLOWED_IP_RANGES", "TRAIN_CPU", "TRAIN_SCHEDULE", "METRIC", "MIN_SCORE", "MAX_REGRESSION",
        "TRAIN_ENTRYPOINT", "MODEL_NAME", "TRAIN_TIMEOUT", "TRAIN_DATA_BUCKET",
    ])  # fmt: skip


def test_the_training_settings_are_ignored_without_the_job_except_the_schedule():
    settings = EndpointSettings.from_env({**BASE_ENV, "TRAIN_CPU": "2", "MIN_SCORE": "0.9"})

    assert settings.training is None
