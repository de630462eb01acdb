"""Bad settings stop the real make targets in one line, before cdktn or anything slow starts."""

import os
import re
import subprocess
import sys

import pytest

from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK
from secure_endpoint.settings import STACK_NAME
from tests.helpers import ROOT
from tests.infra import BASE_ENV

# Everything the targets read, cleared so the machine's own settings cannot leak in; and make's
# own, so that a make started by `make test` does not behave as a sub-make.
CLEARED = (
    "PROJECT_ID", "REGION", "ALLOWED_IP_RANGES", "MODEL_URI", "MODEL_BUCKET", "TF_STATE_BUCKET",
    "IMAGE", "DOMAIN", "STACK", "BOOTSTRAP_STATE_IN_BUCKET", "TERRAFORM_BINARY_NAME",
    "MAKEFLAGS", "MAKELEVEL", "MFLAGS",
    "ALLOWLIST_FILE", "STACK_COMMAND",
)  # fmt: skip
BOOTSTRAP_ONLY = {"PROJECT_ID": "p", "MODEL_BUCKET": "p-models"}


def run(command: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    clean = {name: value for name, value in os.environ.items() if name not in CLEARED}
    return subprocess.run(
        command, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=300, **kwargs
    )


def lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("target", "env", "message"),
    [
        ("synth", {**BASE_ENV, "PROJECT_ID": ""}, "PROJECT_ID: required"),
        ("synth", {**BASE_ENV, "ALLOWED_IP_RANGES": "your ip address"},
         "ALLOWED_IP_RANGES: expected your own addresses, got the placeholder 'your ip address'"),
        ("synth", {**BASE_ENV, "STACK": "everything"}, "STACK: expected one of bootstrap, secure-inference or all"),
        ("synth-hcl", {**BASE_ENV, "MODEL_URI": "gs://YOUR_BUCKET/iris/model.onnx"}, "MODEL_URI: expected"),
        ("deploy", {**BASE_ENV, "MODEL_URI": "gs://YOUR_BUCKET/iris/model.onnx"},
         "MODEL_URI: expected your own value, got the placeholder 'YOUR_BUCKET'"),
        ("deploy", {**BASE_ENV, "MODEL_URI": "gs://b/"},
         "MODEL_URI: expected the model's Cloud Storage URI, gs://bucket/object, got 'gs://b/'"),
        ("deploy", {"PROJECT_ID": "p", "MODEL_URI": "gs://demo-models/model.onnx"}, "ALLOWED_IP_RANGES"),
        ("destroy", {**BASE_ENV, "REGION": "Tokyo"}, "REGION: expected a region"),
        ("bootstrap", {"PROJECT_ID": "p"}, "MODEL_BUCKET: required"),
        ("bootstrap", {"PROJECT_ID": "YOUR_PROJECT", "MODEL_BUCKET": "p-models"},
         "PROJECT_ID: expected your own value, got the placeholder 'YOUR_PROJECT'"),
        ("deploy", {**BASE_ENV, "PROJECT_ID": "your-project-id"},
         "PROJECT_ID: expected your own value, got the placeholder 'your-project-id'"),
        ("synth", {**BASE_ENV, "MODEL_URI": "gs://your-bucket/iris/model.onnx"},
         "MODEL_URI: expected your own value, got the placeholder 'your-bucket'"),
        ("upload", {"MODEL_URI": "gs://YOUR_BUCKET/iris/model.onnx"},
         "got 'gs://YOUR_BUCKET/iris/model.onnx': that is the documentation's placeholder"),
        ("upload", {"MODEL_URI": "gs://your-bucket/iris/model.onnx"},
         "got 'gs://your-bucket/iris/model.onnx': that is the documentation's placeholder"),
        ("upload", {"MODEL_URI": ""}, "MODEL_URI: expected gs://bucket/object, got ''"),
        ("upload", {"MODEL_URI": "gs://b/iris/model.onnx"}, "got 'gs://b/iris/model.onnx': 3 to 222 characters"),
        ("upload", {"MODEL_URI": "gs://demo-models/iris/%{ if true }x%{ endif }"}, "expected a plain object name"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_the_target_in_one_line_before_cdktn(target, env, message):
    # A dry run: the check runs all the same, and should it let a bad setting past, nothing
    # installs (npm ci would empty a shared node_modules) and nothing deploys.
    result = run(["make", "-n", target], env)

    output = lines(result)
    assert result.returncode == 2
    assert len(output) == 1, output
    assert message in output[0]
    assert output[0].count(message.split(":")[0] + ":") == 1
    assert "cdktn" not in output[0] and "cdktf" not in output[0] and "Synthesizing" not in output[0]


def make_dry_run(target: str, env: dict[str, str], *assignments: str) -> list[str]:
    """The commands `make` would run for `target` (its settings check runs for real)."""
    result = run(["make", "-n", target, *assignments], env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("target", "env", "command"),
    [
        ("bootstrap", BOOTSTRAP_ONLY, f"STACK={BOOTSTRAP_STACK} node_modules/.bin/cdktn deploy {BOOTSTRAP_STACK} --migrate-state"),
        ("deploy", BASE_ENV, f"STACK={STACK_NAME} node_modules/.bin/cdktn deploy {STACK_NAME}"),
        ("destroy", BASE_ENV, f"STACK_COMMAND=destroy STACK={STACK_NAME} node_modules/.bin/cdktn destroy {STACK_NAME}"),
        ("synth", BASE_ENV, "STACK=all node_modules/.bin/cdktn synth"),
    ],
)  # fmt: skip
def test_each_target_names_the_stack_cdktn_acts_on(target, env, command):
    assert command in make_dry_run(target, env)


@pytest.mark.parametrize(
    ("env", "assignments", "binary"),
    [
        ({}, (), "terraform"),
        ({}, ("TERRAFORM_BINARY_NAME=tofu",), "tofu"),
        ({"TERRAFORM_BINARY_NAME": "tofu"}, (), "tofu"),
    ],
    ids=["default", "on make's command line", "in the environment"],
)  # fmt: skip
def test_every_recipe_runs_cdktn_with_the_binary_terraform_binary_name_names(env, assignments, binary):
    # cdktn-cli and the app (the bootstrap's terraform_data checks the binary's version at synth)
    # read TERRAFORM_BINARY_NAME from their environment: the Makefile exports it to every recipe.
    result = run(
        ["make", "-s", "--eval", 'print-binary: ; @echo "$$TERRAFORM_BINARY_NAME"', "print-binary", *assignments], env
    )

    assert result.stdout.split() == [binary], result.stderr


def test_the_makefile_names_the_serving_stack_as_the_code_does():
    result = run(["make", "-s", "--eval", "print-%: ; @echo $($*)", "print-SERVING_STACK", "print-BOOTSTRAP_STACK"], {})

    assert result.stdout.split() == [STACK_NAME, BOOTSTRAP_STACK]


def test_the_settings_check_is_silent_when_all_is_well():
    checked = run([sys.executable, "cdktf/main.py", "--check", BOOTSTRAP_STACK], BOOTSTRAP_ONLY)
    upload = run([sys.executable, "-m", "training.upload", "--check", "--to", "gs://p-models/iris/model.onnx"], {})

    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    assert (upload.returncode, upload.stdout, upload.stderr) == (0, "", "")


def test_a_setting_given_on_makes_command_line_reaches_the_check():
    """make 4.3 starts `$(shell …)` with its own starting environment, without command-line variables."""
    without = {name: value for name, value in BASE_ENV.items() if name != "ALLOWED_IP_RANGES"}

    commands = make_dry_run("deploy", without, "ALLOWED_IP_RANGES=203.0.113.4")

    assert f"STACK={STACK_NAME} node_modules/.bin/cdktn deploy {STACK_NAME}" in commands


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1", "ALLOWED_IP_RANGES: expected public addresses, got '10.0.0.1'"),
        ("203.0.113.4'; true '", "ALLOWED_IP_RANGES: expected IPv4/IPv6 addresses or CIDRs, got \"203.0.113.4';\""),
    ],
    ids=["private address", "quotes and a command"],
)  # fmt: skip
def test_a_bad_setting_on_makes_command_line_overrides_a_good_one_in_the_environment(value, message):
    # A dry run: should the check let the value past, nothing installs or deploys.
    result = run(["make", "-n", "deploy", f"ALLOWED_IP_RANGES={value}"], BASE_ENV)

    output = lines(result)
    assert result.returncode == 2
    assert len(output) == 1, output
    assert message in output[0]


@pytest.mark.parametrize(
    ("target", "env", "expected"),
    [
        ("synth", {}, ["PROJECT_ID: required", "MODEL_BUCKET: required (or set MODEL_URI=gs://bucket/…, whose bucket is used)",
                       "ALLOWED_IP_RANGES: required", "MODEL_URI: required"]),
        ("deploy", {"PROJECT_ID": "My Project", "MODEL_URI": "gs://b/m.onnx", "REGION": "Tokyo", "IMAGE": "x y"},
         ["PROJECT_ID: expected a Google Cloud project id", "REGION: expected a region",
          "ALLOWED_IP_RANGES: required", "MODEL_URI: expected the model's Cloud Storage URI", "IMAGE: expected a container image"]),
        ("bootstrap", {}, ["PROJECT_ID: required",
                           "MODEL_BUCKET: required (or set MODEL_URI=gs://bucket/…, whose bucket is used)"]),
        ("bootstrap", {"PROJECT_ID": "acme-google-x", "MODEL_BUCKET": "goog-models", "BOOTSTRAP_STATE_IN_BUCKET": "maybe"},
         ["MODEL_BUCKET: expected a Cloud Storage bucket name, got 'goog-models': Cloud Storage refuses bucket names that begin with 'goog'",
          "BOOTSTRAP_STATE_IN_BUCKET: expected true or false",
          "PROJECT_ID: the bootstrap names a bucket after the project, 'acme-google-x-tfstate', which Cloud Storage would refuse: "
          "Cloud Storage refuses bucket names that contain 'google'"]),
    ],
    ids=["synth with nothing", "deploy with four bad", "bootstrap with nothing", "bootstrap with three bad"],
)  # fmt: skip
def test_every_bad_setting_is_named_in_one_run_one_line_each(target, env, expected):
    result = run(["make", "-n", target], env)

    output = lines(result)
    assert result.returncode == 2
    assert len(output) == len(expected), output
    for line, words in zip(output, expected):
        assert words in line
    assert output[0].startswith("Makefile:") and output[-1].endswith(".  Stop.")
    assert all("cdktf" not in line for line in output)


def test_the_settings_check_prints_one_line_per_bad_setting(tmp_path):
    checked = run([sys.executable, "cdktf/main.py", "--check", "all"], {"PROJECT_ID": "p", "MODEL_BUCKET": "ab"})

    assert checked.returncode == 2 and checked.stdout == ""
    assert checked.stderr.splitlines() == [
        "error: MODEL_BUCKET: expected a Cloud Storage bucket name, got 'ab': 3 to 222 characters: lowercase "
        "letters, digits, '-', '_' and '.', starting and ending with a letter or a digit",
        "error: ALLOWED_IP_RANGES: required; expected the addresses or CIDRs allowed in, such as 203.0.113.4 "
        "(yours: https://checkip.amazonaws.com), or ALLOWLIST_FILE=allowlist.toml (named entries), got nothing",
        "error: MODEL_URI: required; expected the model's Cloud Storage URI, gs://bucket/object "
        "(`make publish` prints it), got nothing",
    ]


# Steps other targets run first; not commands a user types.
INTERNAL_TARGETS = {"help", "run-port-free", "debian-deps", "settings-upload", "settings-destroy"}


def test_plain_make_lists_every_target_a_user_runs():
    # Rules, not the Python of a `define … endef` block.
    makefile = re.sub(r"^define .*?^endef$", "", (ROOT / "Makefile").read_text(), flags=re.MULTILINE | re.DOTALL)
    defined = {
        target
        for line in re.findall(r"^([a-z][a-z0-9 -]*):(?!=)", makefile, re.MULTILINE)
        for target in line.split()
    }
    result = run(["make"], {})

    listed = set(re.findall(r"^make ([a-z][a-z0-9-]*)", result.stdout, re.MULTILINE))
    assert result.returncode == 0
    assert len(defined) > 10
    assert listed == defined - INTERNAL_TARGETS
