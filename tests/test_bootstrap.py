"""The bootstrap stack, synthesized for real beside the serving stack, as `cdktn synth` does."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from secure_endpoint.app import read_settings, synthesize
from secure_endpoint.bootstrap import APIS, APIS_WAIT, BUILD_ACCOUNT_ID, BUILD_ROLES
from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings
from secure_endpoint.settings import REPOSITORY, STACK_NAME, EndpointSettings, SettingsError
from tests.helpers import ROOT
from tests.infra import BASE_ENV, Synthesized

BOOTSTRAP_ENV = {**BASE_ENV, "MODEL_BUCKET": "p-models"}
CDKTN = ROOT / "node_modules" / ".bin" / "cdktn"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# What checkov asks of the bootstrap that it does not do, and why.
ACCEPTED_CHECKS = {
    # Usage-log buckets would be one more bucket to guard; IAM changes are in the Admin Activity
    # audit log already, and Data Access audit logs can be turned on where reads must be recorded.
    "CKV_GCP_62": {"google_storage_bucket"},
    # Customer-managed keys need Cloud KMS, a key ring and grants: Google-managed encryption here.
    "CKV_GCP_84": {"google_artifact_registry_repository"},
    # Staged build sources expire after a week; versioning would keep them.
    "CKV_GCP_78": {"google_storage_bucket.bootstrap_build-source-bucket"},
}
# Which API each kind of resource calls: it must depend on that API's google_project_service.
NEEDS_API = {
    "google_storage_bucket": "storage.googleapis.com",
    "google_storage_bucket_iam_member": "storage.googleapis.com",
    "google_artifact_registry_repository": "artifactregistry.googleapis.com",
    "google_artifact_registry_repository_iam_member": "artifactregistry.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_project_iam_member": "cloudresourcemanager.googleapis.com",
}


@pytest.fixture(scope="session")
def both_stacks(tmp_path_factory) -> dict[str, Synthesized]:
    """One app with both stacks, as the app builds it when STACK is unset; each stack's JSON."""
    outdir = synthesize(read_settings("all", BOOTSTRAP_ENV), tmp_path_factory.mktemp("both-stacks"))
    return {
        stack: Synthesized((outdir / "stacks" / stack / "cdk.tf.json").read_text())
        for stack in (BOOTSTRAP_STACK, STACK_NAME)
    }


@pytest.fixture(scope="session")
def bootstrap(both_stacks) -> Synthesized:
    return both_stacks[BOOTSTRAP_STACK]


def api_address(stack: Synthesized, api: str) -> str:
    (name,) = [name for name, r in stack.resources("google_project_service").items() if r["service"] == api]
    return f"google_project_service.{name}"


def named(stack: Synthesized, kind: str, name: str) -> dict:
    (resource,) = [r for r in stack.resources(kind).values() if r.get("name") == name]
    return resource


def test_every_api_the_endpoint_and_the_build_call_is_enabled_and_left_on(bootstrap):
    services = bootstrap.resources("google_project_service").values()

    assert {s["service"] for s in services} == set(APIS)
    assert set(APIS) >= {
        f"{api}.googleapis.com"
        for api in ("run", "compute", "iam", "artifactregistry", "cloudbuild", "storage", "cloudscheduler",
                    "cloudresourcemanager", "serviceusage", "logging")
    }  # fmt: skip
    assert all(s["disable_on_destroy"] is False for s in services)


@pytest.mark.parametrize("bucket", ["p-models", "p-tfstate"])
def test_model_and_state_buckets_are_private_versioned_and_never_destroyed(bootstrap, bucket):
    made = named(bootstrap, "google_storage_bucket", bucket)

    assert made["location"] == "asia-northeast1"
    assert made["uniform_bucket_level_access"] is True
    assert made["public_access_prevention"] == "enforced"
    assert made["versioning"] == {"enabled": True}
    assert made["lifecycle"]["prevent_destroy"] is True


def test_build_sources_are_staged_in_a_private_bucket_that_forgets_them(bootstrap):
    staging = named(bootstrap, "google_storage_bucket", "p_cloudbuild")

    assert staging["uniform_bucket_level_access"] is True
    assert staging["public_access_prevention"] == "enforced"
    assert [rule["action"]["type"] for rule in staging["lifecycle_rule"]] == ["Delete"]


def test_the_repository_is_the_one_the_default_image_names(bootstrap):
    repository = bootstrap.one("google_artifact_registry_repository")
    image = EndpointSettings.from_env(BASE_ENV).image

    assert repository["format"] == "DOCKER"
    assert image.startswith(f"{repository['location']}-docker.pkg.dev/p/{repository['repository_id']}/")
    assert repository["repository_id"] == REPOSITORY


def test_the_build_account_may_push_images_write_logs_and_read_sources_only(bootstrap):
    account = bootstrap.one("google_service_account")
    member = bootstrap.address("google_service_account", "member")
    repository_grant = bootstrap.one("google_artifact_registry_repository_iam_member")
    project_grant = bootstrap.one("google_project_iam_member")
    source_grant = bootstrap.one("google_storage_bucket_iam_member")
    (source_bucket,) = [n for n, b in bootstrap.resources("google_storage_bucket").items() if b["name"] == "p_cloudbuild"]

    assert account["account_id"] == BUILD_ACCOUNT_ID
    assert {repository_grant["role"], project_grant["role"], source_grant["role"]} == set(BUILD_ROLES.values())
    assert repository_grant["role"] == "roles/artifactregistry.writer"
    assert repository_grant["repository"] == bootstrap.address("google_artifact_registry_repository", "name")
    assert project_grant == {**project_grant, "project": "p", "role": "roles/logging.logWriter"}
    assert source_grant["bucket"] == f"${{google_storage_bucket.{source_bucket}.name}}"
    assert {repository_grant["member"], project_grant["member"], source_grant["member"]} == {member}
    assert not bootstrap.resources("google_storage_bucket_iam_binding")
    assert not bootstrap.resources("google_project_iam_binding")


@pytest.mark.parametrize("kind", sorted(NEEDS_API))
def test_each_resource_waits_for_the_api_it_calls(bootstrap, kind):
    resources = bootstrap.resources(kind)

    assert resources, kind
    for resource in resources.values():
        assert api_address(bootstrap, NEEDS_API[kind]) in resource["depends_on"]


def test_every_resource_waits_a_minute_after_the_apis_are_enabled(bootstrap):
    """An API answers "has not been used or is disabled" for a while after it is enabled, and the
    provider does not retry that: the first calls wait for the enablement to propagate."""
    ((name, wait),) = bootstrap.resources("time_sleep").items()
    services = {f"google_project_service.{key}" for key in bootstrap.resources("google_project_service")}

    assert wait["create_duration"] == APIS_WAIT == "60s"
    assert services <= set(wait["depends_on"])
    assert "time" in bootstrap.json["terraform"]["required_providers"]
    for kind in NEEDS_API:
        for resource in bootstrap.resources(kind).values():
            assert f"time_sleep.{name}" in resource["depends_on"], kind


def test_no_resource_of_the_bootstrap_is_left_unchecked_for_its_api(bootstrap):
    kinds = set(bootstrap.json["resource"]) - {"google_project_service", "terraform_data", "time_sleep"}

    assert kinds == set(NEEDS_API)


def test_the_stacks_share_names_not_objects(both_stacks):
    for stack in both_stacks.values():
        text = json.dumps(stack.json)
        assert "terraform_remote_state" not in text
        assert not stack.json.get("data", {}).get("terraform_remote_state")
    serving = json.dumps(both_stacks[STACK_NAME].json)
    for kind, resources in both_stacks[BOOTSTRAP_STACK].json["resource"].items():
        for name in resources:
            assert f"{kind}.{name}" not in serving


def test_outputs_name_what_was_made_and_the_next_commands(bootstrap):
    outputs = bootstrap.json["output"]

    assert set(outputs) >= {"state_bucket", "model_bucket", "repository", "build_service_account", "next_steps"}
    assert outputs["build_service_account"]["value"] == bootstrap.address("google_service_account", "email")
    steps = outputs["next_steps"]["value"]
    for command in ("export TF_STATE_BUCKET=", "gcloud builds submit --config cloudbuild.yaml", "make upload", "make deploy"):
        assert command in steps


def test_bootstrap_state_moves_into_the_state_bucket_when_asked():
    from cdktn import App, Testing

    from secure_endpoint.bootstrap import BootstrapStack

    settings = BootstrapSettings.from_env({**BOOTSTRAP_ENV, "BOOTSTRAP_STATE_IN_BUCKET": "true"})
    stack = json.loads(Testing.synth(BootstrapStack(App(), BOOTSTRAP_STACK, settings=settings)))

    assert stack["terraform"]["backend"]["gcs"]["bucket"] == "p-tfstate"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PROJECT_ID": ""}, "PROJECT_ID: required"),
        ({"PROJECT_ID": "YOUR_PROJECT"}, "PROJECT_ID: expected your own value, got the placeholder 'YOUR_PROJECT'"),
        ({"PROJECT_ID": "your-project"}, "PROJECT_ID: expected your own value"),
        ({"PROJECT_ID": "example.com:p"}, "PROJECT_ID: the bootstrap names its buckets after the project"),
        ({"MODEL_BUCKET": "YOUR_BUCKET"}, "MODEL_BUCKET: expected your own value, got the placeholder 'YOUR_BUCKET'"),
        ({"MODEL_BUCKET": "models.example.com"}, "MODEL_BUCKET: expected a new bucket's name"),
        ({"MODEL_BUCKET": "ab"}, "MODEL_BUCKET: expected a Cloud Storage bucket name, got 'ab': 3 to 222 characters"),
        ({"MODEL_BUCKET": "google-models"}, "MODEL_BUCKET: expected a Cloud Storage bucket name, got 'google-models': Cloud Storage refuses bucket names that begin with 'goog'"),
        ({"TF_STATE_BUCKET": "Upper"}, "TF_STATE_BUCKET: expected a Cloud Storage bucket name, got 'Upper'"),
        ({"REGION": "tokyo"}, "REGION: expected a region"),
        ({"BOOTSTRAP_STATE_IN_BUCKET": "maybe"}, "BOOTSTRAP_STATE_IN_BUCKET: expected true or false"),
    ],
)
def test_bad_bootstrap_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        BootstrapSettings.from_env({"PROJECT_ID": "p", "MODEL_BUCKET": "p-models", **env})


def test_bootstrap_needs_neither_the_allowlist_nor_a_model_uri():
    settings = BootstrapSettings.from_env({"PROJECT_ID": "p", "MODEL_BUCKET": "p-models"})

    assert (settings.model_bucket, settings.state_bucket, settings.region) == ("p-models", "p-tfstate", "asia-northeast1")


def test_without_model_bucket_the_bootstrap_makes_model_uris_bucket():
    assert BootstrapSettings.from_env({"PROJECT_ID": "p", "MODEL_URI": "gs://p-models/iris/model.onnx"}).model_bucket == "p-models"


def test_bootstrap_without_a_model_bucket_says_which_setting_is_missing():
    with pytest.raises(SettingsError, match="^MODEL_BUCKET: required"):
        BootstrapSettings.from_env({"PROJECT_ID": "p"})


def test_cloudbuild_builds_the_default_images_as_the_build_account_logging_to_cloud_logging_only():
    config = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    substitutions = config["substitutions"]
    image, train_image = config["images"]

    def built(image: str) -> str:
        image = image.replace("$PROJECT_ID", "p")
        for name, value in substitutions.items():
            image = image.replace(f"${{{name}}}", value)
        return image

    settings = EndpointSettings.from_env({**BASE_ENV, "TRAIN_JOB": "true"})
    assert built(image) == settings.image
    assert built(train_image) == settings.training.image
    assert substitutions["_REPOSITORY"] == REPOSITORY
    serving, training = config["steps"]
    assert f"--tag={image}" in serving["args"] and not any("--file" in a for a in serving["args"])
    assert f"--tag={train_image}" in training["args"] and "--file=Dockerfile.train" in training["args"]
    assert config["serviceAccount"] == (
        f"projects/$PROJECT_ID/serviceAccounts/{BUILD_ACCOUNT_ID}@$PROJECT_ID.iam.gserviceaccount.com"
    )
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"


# The region guard runs on the real Terraform CLI: terraform_data is built into Terraform, so this
# needs no provider download. Only the guard is applied; the rest needs Google's APIs. The binary
# is the one cdktn runs: TERRAFORM_BINARY_NAME, as the Makefile passes it (tofu for OpenTofu).
TERRAFORM = os.environ.get("TERRAFORM_BINARY_NAME") or "terraform"


def guard_config(region: str) -> dict:
    from cdktn import App, Testing

    from secure_endpoint.bootstrap import BootstrapStack

    settings = BootstrapSettings.from_env({**BOOTSTRAP_ENV, "REGION": region})
    stack = json.loads(Testing.synth(BootstrapStack(App(), BOOTSTRAP_STACK, settings=settings)))
    return {"resource": {"terraform_data": stack["resource"]["terraform_data"]}}


def terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
    env.pop("TF_CLI_CONFIG_FILE", None)
    return subprocess.run(
        [TERRAFORM, *args, "-no-color"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_region_change_is_refused_by_the_plan_before_anything_moves(tmp_path):
    assert shutil.which(TERRAFORM), "the Terraform CLI is needed: docs/deploy.md, Tools"
    config = tmp_path / "main.tf.json"
    config.write_text(json.dumps(guard_config("asia-northeast1")))
    assert terraform(tmp_path, "init").returncode == 0
    applied = terraform(tmp_path, "apply", "-auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    unchanged = terraform(tmp_path, "plan", "-detailed-exitcode")
    config.write_text(json.dumps(guard_config("europe-west1")))
    moved = terraform(tmp_path, "plan")

    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert moved.returncode == 1
    assert (
        "REGION: this project was bootstrapped in asia-northeast1, got europe-west1" in moved.stderr
    ), moved.stdout + moved.stderr


@pytest.fixture(scope="module")
def bootstrap_alone(tmp_path_factory) -> Path:
    """`cdktn synth --hcl` through the pinned CLI with the bootstrap's settings only, as `make synth STACK=bootstrap`."""
    assert CDKTN.exists(), "`make test` installs cdktn-cli from package-lock.json"
    out = tmp_path_factory.mktemp("bootstrap-alone")
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("ALLOWED_IP_RANGES", "MODEL_URI")},
        "PROJECT_ID": "p",
        "MODEL_BUCKET": "p-models",
        "STACK": BOOTSTRAP_STACK,
        "PATH": f"{CDKTN.parent}{os.pathsep}{os.environ['PATH']}",
        "CHECKPOINT_DISABLE": "1",
        "HOME": str(out),  # cdktn-cli keeps its config in ~/.cdktf
    }
    result = subprocess.run(
        [str(CDKTN), "synth", "--hcl", "--output", str(out / "cdktf.out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "cdktf.out"


def test_the_bootstrap_synth_checks_the_binary_terraform_binary_name_names(tmp_path):
    # terraform_data needs Terraform 1.4: cdktn runs `$TERRAFORM_BINARY_NAME version` at synth,
    # so OpenTofu (TERRAFORM_BINARY_NAME=tofu) is what gets checked, not a `terraform` beside it.
    missing = tmp_path / "no-such-dir" / "tofu"
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("ALLOWED_IP_RANGES", "MODEL_URI")},
        "PROJECT_ID": "p",
        "MODEL_BUCKET": "p-models",
        "STACK": BOOTSTRAP_STACK,
        "TERRAFORM_BINARY_NAME": str(missing),
        "PATH": f"{CDKTN.parent}{os.pathsep}{os.environ['PATH']}",
        "CHECKPOINT_DISABLE": "1",
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [str(CDKTN), "synth", "--output", str(tmp_path / "cdktf.out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode != 0
    assert f"Could not determine version of {missing}" in result.stdout + result.stderr
    assert not (tmp_path / "cdktf.out" / "stacks" / BOOTSTRAP_STACK / "cdk.tf.json").exists()


def test_cdktn_synth_of_the_bootstrap_alone_needs_no_serving_settings(bootstrap_alone):
    manifest = json.loads((bootstrap_alone / "manifest.json").read_text())

    assert set(manifest["stacks"]) == {BOOTSTRAP_STACK}
    assert (bootstrap_alone / "stacks" / BOOTSTRAP_STACK / "cdk.tf").exists()
    assert not (bootstrap_alone / "stacks" / STACK_NAME).exists()


def test_checkov_fails_the_bootstrap_only_on_the_accepted_checks(bootstrap_alone):
    assert CHECKOV.exists(), "`make test` installs checkov into .venv-checkov"
    scan = subprocess.run(
        [str(CHECKOV), "-d", str(bootstrap_alone / "stacks" / BOOTSTRAP_STACK), "--framework", "terraform",
         "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    report = json.loads(scan.stdout)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    for failed in report["results"]["failed_checks"]:
        accepted = ACCEPTED_CHECKS.get(failed["check_id"], set())
        assert any(failed["resource"].startswith(prefix) for prefix in accepted), failed["check_id"] + " " + failed["resource"]


@pytest.mark.parametrize(
    ("project", "bucket", "found"),
    [
        ("acme-google-x", "acme-google-x_cloudbuild", "'google'"),
        ("acme-g00gle-x", "acme-g00gle-x_cloudbuild", "'g00gle'"),
        ("goog-tools", "goog-tools_cloudbuild", None),
    ],
)  # fmt: skip
def test_a_project_whose_buckets_cloud_storage_would_refuse_is_named_with_the_rule(project, bucket, found):
    # TF_STATE_BUCKET given: the build source bucket is named after the project all the same.
    with pytest.raises(SettingsError) as raised:
        BootstrapSettings.from_env({"PROJECT_ID": project, "MODEL_BUCKET": "p-models", "TF_STATE_BUCKET": "p-state"})

    (line,) = raised.value.lines
    assert line.startswith(f"PROJECT_ID: the bootstrap names a bucket after the project, {bucket!r}, which Cloud Storage would refuse: ")
    if found:
        assert f"contain 'google' or a close misspelling such as 'g00gle' (this one contains {found})" in line
    else:
        assert "Cloud Storage refuses bucket names that begin with 'goog'" in line


@pytest.mark.parametrize("bucket", ["my-google-models", "models-g00gle", "goog-models", "team-gooogle-x"])
def test_bucket_names_cloud_storage_refuses_are_refused_at_the_bootstrap(bucket):
    with pytest.raises(SettingsError, match=rf"^MODEL_BUCKET: expected a Cloud Storage bucket name, got '{bucket}': Cloud Storage refuses"):
        BootstrapSettings.from_env({"PROJECT_ID": "p", "MODEL_BUCKET": bucket})
