"""No setting reaches Terraform as an expression: each string is held to its grammar, free text is escaped."""

import json
import os
import shutil
import subprocess

import pytest

from secure_endpoint.app import STACK
from secure_endpoint.armor import Rule, rules_from_terraform
from secure_endpoint.bootstrap_settings import BOOTSTRAP_SETTINGS, BootstrapSettings
from secure_endpoint.declared import Reading
from secure_endpoint.free_text import literal, unliteral
from secure_endpoint.grammar import Invalid, domain, gs_uri, image, project_id
from secure_endpoint.settings import SETTINGS, EndpointSettings, SettingsError
from tests.infra import BASE_ENV

DIGEST = "sha256:" + "ab" * 32
# A good value of every declared setting: each is tried with an expression inside it.
GOOD = {
    "PROJECT_ID": "demo-project", "REGION": "europe-west1", "ALLOWED_IP_RANGES": "203.0.113.4",
    "ALLOWLIST_FILE": "allowlist.example.toml", "MAX_BODY_BYTES": "262144",
    "MODEL_URI": "gs://demo-models/iris/model.onnx", "IMAGE": f"europe-docker.pkg.dev/p/r/inference@{DIGEST}",
    "DOMAIN": "api.example.com", "PREVIOUS_DOMAIN": "old.example.com", "IPV6": "true",
    "TF_STATE_BUCKET": "demo-state", "MIN_INSTANCES": "1", "MAX_INSTANCES": "4", "CONCURRENCY": "10",
    "DELETION_PROTECTION": "false", "WAF_RULES": "true", "RATE_LIMIT_PER_MINUTE": "600",
    "CANARY_MODEL_URI": "gs://demo-models/iris/v2/model.onnx", "CANARY_PERCENT": "5",
    "PREDICTION_LOG_RATE": "0.5", "EXPOSURE": "internal", "NETWORK": "inference-vpc",
    "SUBNET": "inference-subnet", "PROXY_SUBNET_CIDR": "10.129.0.0/23", "GLOBAL_ACCESS": "true", "MODEL_BUCKET": "demo-models", "BOOTSTRAP_STATE_IN_BUCKET": "true",
    "TRAIN_JOB": "true", "TRAIN_IMAGE": f"europe-docker.pkg.dev/p/r/inference-train@{DIGEST}",
    "TRAIN_ENTRYPOINT": "training.examples.churn:train", "MODEL_NAME": "churn", "METRIC": "log_loss",
    "MIN_SCORE": "0.9", "MAX_REGRESSION": "0.02", "TRAIN_DATA_BUCKET": "demo-data", "TRAIN_CPU": "2",
    "TRAIN_MEMORY": "4Gi", "TRAIN_TIMEOUT": "1800", "TRAIN_SCHEDULE": "0 3 * * MON",
    "LB_LOG_SAMPLE_RATE": "0.5", "ALERT_EMAIL": "oncall@example.com", "ALERT_5XX_RATIO": "0.05",
    "ALERT_P95_MS": "2000", "ALERT_DENIALS_PER_MINUTE": "100",
}  # fmt: skip
# The first reads the deployer's credentials at plan; the others are each syntax.
EXPRESSIONS = (
    '${file(pathexpand("~/.config/gcloud/application_default_credentials.json"))}',
    "${var.x}",
    "%{ if true }x%{ endif }",
    "%{for k in [1]}k%{endfor}",
)
DECLARED = {setting.name: setting for setting in (*SETTINGS, *BOOTSTRAP_SETTINGS)}


def with_expression(value: str, expression: str) -> list[str]:
    """The expression after the value, inside it, and in place of it."""
    middle = len(value) // 2
    return [value + expression, value[:middle] + expression + value[middle:], expression]


def test_every_declared_setting_has_a_good_example():
    assert set(DECLARED) == set(GOOD)


@pytest.mark.parametrize("name", sorted(DECLARED))
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_no_setting_takes_a_terraform_expression(name, expression):
    setting = DECLARED[name]
    assert Reading({name: GOOD[name]})(setting) is not None

    for value in with_expression(GOOD[name], expression):
        read = Reading({name: value})
        assert read(setting) is None, value
        assert len(read.problems) == 1 and read.problems[0].startswith(f"{name}: "), read.problems


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_stacks_refuse_an_expression_in_any_setting(expression):
    for name in sorted(DECLARED):
        value = GOOD[name] + expression
        if name in {s.name for s in SETTINGS}:
            with pytest.raises(SettingsError) as raised:
                EndpointSettings.from_env({**BASE_ENV, "IPV6": "true", name: value})
            assert any(line.startswith(f"{name}: ") for line in raised.value.lines), name
        if name in {s.name for s in BOOTSTRAP_SETTINGS}:
            # MODEL_URI stands in for MODEL_BUCKET only when that is unset.
            env = {"PROJECT_ID": "p", "MODEL_BUCKET": "p-models", name: value}
            if name == "MODEL_URI":
                del env["MODEL_BUCKET"]
            with pytest.raises(SettingsError) as raised:
                BootstrapSettings.from_env(env)
            assert any(line.startswith(f"{name}: ") for line in raised.value.lines), name


def test_the_stack_setting_takes_only_a_stack_name():
    from secure_endpoint.app import read_settings

    with pytest.raises(SettingsError, match="^STACK: expected one of"):
        read_settings("${var.x}", BASE_ENV)
    assert STACK.name == "STACK"


@pytest.mark.parametrize(
    "value",
    [
        "nginx", "nginx:1.27", "library/nginx:latest", "localhost:5000/team/app:v1",
        "asia-northeast1-docker.pkg.dev/my-project/repo/inference:v1",
        f"asia-northeast1-docker.pkg.dev/my-project/repo/inference@{DIGEST}",
        f"ghcr.io/org/app_name.x:v1.2-rc@{DIGEST}", "[2001:db8::1]:5000/app",
    ],
)  # fmt: skip
def test_image_references_of_the_oci_grammar_are_accepted(value):
    assert image(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "Nginx", "nginx:", "nginx:-tag", "nginx@sha256:abc", "nginx@sha256:" + "AB" * 32, "a//b",
        "app name", "app:v1:v2", "-app", "app-", "registry.io/", "a" * 256,
    ],
)  # fmt: skip
def test_image_references_outside_the_grammar_are_refused(value):
    with pytest.raises(Invalid, match="expected a container image reference"):
        image(value)


@pytest.mark.parametrize(
    "value, accepted",
    [
        ("api.example.com", True), ("xn--bcher-kva.example", True), ("a.b.xn--p1ai", True),
        ("API.example.com", False), ("example", False), ("-a.example.com", False), ("a-.example.com", False),
        ("a..example.com", False), ("api.example.123", False), ("a_b.example.com", False),
        ("api.example.com.", False), (("a" * 64) + ".com", False), (".".join(["abcdefghi"] * 26) + ".com", False),
    ],
)  # fmt: skip
def test_domains_follow_rfc_1123_in_lowercase(value, accepted):
    if accepted:
        assert domain(value) == value
    else:
        with pytest.raises(Invalid, match="expected a domain name"):
            domain(value)


@pytest.mark.parametrize(
    "value, accepted",
    [
        ("p", True), ("my-project-123", True), ("example.com:my-project", True), ("a" * 30, True),
        ("a" * 31, False), ("project-", False), ("1project", False), ("My-Project", False),
        ("my_project", False), ("example.com:", False),
    ],
)  # fmt: skip
def test_project_ids_follow_googles_rules(value, accepted):
    if accepted:
        assert project_id(value) == value
    else:
        with pytest.raises(Invalid, match="expected a Google Cloud project id"):
            project_id(value)


@pytest.mark.parametrize(
    "value, problem",
    [
        ("gs://demo-models/a b.onnx", "a plain object name"),
        ("gs://demo-models/a\nb.onnx", "a plain object name"),
        ("gs://demo-models/../model.onnx", "without '.' or '..' parts"),
        ("gs://demo-models/.well-known/acme-challenge/x", "outside .well-known/acme-challenge/"),
        ("gs://demo-models/" + "m" * 1025, "at most 1024 bytes"),
        ("gs://demo-models/dir/", "an object, not a folder"),
        ("gs://demo-models/", "an object name after the bucket"),
        ("gs://my-google-models/model.onnx", "contain 'google'"),
        ("gs://goog-models/model.onnx", "begin with 'goog'"),
    ],
)  # fmt: skip
def test_model_uris_name_a_bucket_and_a_plain_object(value, problem):
    with pytest.raises(Invalid) as raised:
        gs_uri(value)

    assert problem in str(raised.value)
    assert gs_uri("gs://demo-models/models/iris/0123abcd/model-v1_2.onnx")


def test_free_text_is_escaped_for_terraform_and_read_back_as_written():
    text = "owner ${file(\"~/.config/x\")} and %{ if true }x%{ endif }, $${kept} %%{kept}"

    escaped = literal(text)

    assert "${" not in escaped.replace("$${", "") and "%{" not in escaped.replace("%%{", "")
    assert unliteral(escaped) == text
    rule = {"priority": 1, "action": "allow", "description": escaped, "match": {"config": {"src_ip_ranges": ["*"]}}}
    assert rules_from_terraform({"rule": [rule]}) == [Rule(1, "allow", text, ("*",))]


def terraform_reads(tmp_path, value: str) -> str:
    """What `terraform console` makes of `value` as a string in the JSON it is given."""
    terraform = shutil.which("terraform")
    assert terraform, "the terraform binary that cdktf deploys with"
    (tmp_path / "main.tf.json").write_text(json.dumps({"locals": {"d": value}}))
    result = subprocess.run(
        [terraform, "console"], input="local.d\n", cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_terraform_reads_escaped_free_text_literally(tmp_path):
    secret = tmp_path / "credentials.json"
    secret.write_text("SECRET")
    text = f'owner ${{file("{secret}")}} %{{ if true }}yes%{{ endif }}'

    assert "SECRET" in terraform_reads(tmp_path, text)  # what an unescaped setting would do
    read = terraform_reads(tmp_path, literal(text))

    assert "SECRET" not in read
    assert json.loads(read) == text
