"""What can be checked of the image without a container engine: lint, layer order, build context."""

import fnmatch
import subprocess

import pytest

from tests.helpers import BIN, ROOT
from tools import serving_lock
from tests.test_server import dockerfile_instruction


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [str(BIN / "hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_and_user_is_not_root():
    (base,) = dockerfile_instruction("FROM")
    (user,) = dockerfile_instruction("USER")

    assert ":" in base and not base.endswith((":latest", ":3", ":3.11"))
    assert user not in ("root", "0")


def test_dependencies_install_before_the_code_is_copied():
    copies = dockerfile_instruction("COPY")
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    first_code = next(i for i, line in enumerate(lines) if line.startswith("COPY main.py"))

    assert copies[0] == "requirements.lock ."
    assert install < first_code


def excluded_by_dockerignore(path: str) -> bool:
    """Docker's rule: the last pattern that matches a path decides; `!` re-includes."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").replace("**/", "*/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path", [".venv/bin/python", "node_modules/cdktn-cli/package.json", "cdktf.out/stacks/x/cdk.tf.json",
             "artifacts/model.onnx", "tests/test_server.py", ".git/HEAD", "function/__pycache__/app.cpython-311.pyc"],
)  # fmt: skip
def test_build_context_leaves_out(path):
    assert excluded_by_dockerignore(path)


@pytest.mark.parametrize("path", ["requirements.lock", "main.py", "function/app.py", "function/model.py"])
def test_build_context_keeps(path):
    assert not excluded_by_dockerignore(path)


def test_the_image_installs_exactly_the_locked_set():
    (run,) = [line for line in dockerfile_instruction("RUN") if "pip install" in line]

    assert "--no-deps -r requirements.lock" in run
    assert "pip check" in run


def test_the_lock_is_the_tested_set_of_what_requirements_txt_pulls_in():
    """Every package the service needs, transitive ones included, at the version tested here:
    a requirements.txt bump without `make lock` fails here rather than in the image."""
    locked = serving_lock.LOCK.read_text()

    assert locked == serving_lock.render(serving_lock.closure(serving_lock.requirements()))
    for requirement in serving_lock.requirements():
        assert f"\n{serving_lock.canonical(requirement.name)}=={next(iter(requirement.specifier)).version}\n" in locked


def test_the_lock_names_no_training_or_test_package():
    names = {line.split("==")[0] for line in serving_lock.LOCK.read_text().splitlines() if "==" in line}

    assert not names & {"scikit-learn", "skl2onnx", "pandas", "pytest", "onnx", "cdktf", "cdktn"}


def test_the_dev_lock_is_the_tested_set_and_agrees_with_the_image():
    dev = serving_lock.DEV_LOCK.read_text()
    pins = lambda text: {line for line in text.splitlines() if "==" in line}  # noqa: E731

    assert dev == serving_lock.render_dev()
    assert pins(serving_lock.LOCK.read_text()) <= pins(dev)
    assert "\nscipy==" in dev, "the training side's transitive packages are locked too"


# The training job's image (Dockerfile.train): the same checks, against its own lock.
TRAIN_DOCKERFILE = ROOT / "Dockerfile.train"


def train_instruction(keyword: str) -> list[str]:
    text = TRAIN_DOCKERFILE.read_text().replace("\\\n", " ")
    return [line[len(keyword) + 1 :].strip() for line in text.splitlines() if line.startswith(keyword + " ")]


def test_hadolint_finds_nothing_in_the_training_image():
    result = subprocess.run(
        [str(BIN / "hadolint"), TRAIN_DOCKERFILE.name], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_training_image_shares_the_services_base_runs_as_non_root_and_runs_the_job():
    (base,) = train_instruction("FROM")
    (user,) = train_instruction("USER")
    (command,) = train_instruction("CMD")

    assert base == dockerfile_instruction("FROM")[0]
    assert user not in ("root", "0")
    assert command == '["python", "-m", "training.job"]'


def test_the_training_image_installs_exactly_its_locked_set_before_the_code():
    copies = train_instruction("COPY")
    (run,) = [line for line in train_instruction("RUN") if "pip install" in line]

    assert copies[0] == "requirements-train.lock ."
    assert set(copies[1:]) == {"function/ function/", "training/ training/"}
    assert "--no-deps -r requirements-train.lock" in run and "pip check" in run


@pytest.mark.parametrize("path", ["requirements-train.lock", "training/job.py", "training/examples/churn.py"])
def test_build_context_keeps_what_the_training_image_copies(path):
    assert not excluded_by_dockerignore(path)


def test_the_training_lock_is_the_tested_set_with_the_trainers_and_agrees_with_the_others():
    locked = serving_lock.TRAIN_LOCK.read_text()
    pins = lambda text: {line for line in text.splitlines() if "==" in line}  # noqa: E731

    assert locked == serving_lock.render_train()
    assert {"scikit-learn", "skl2onnx", "onnx", "pandas"} <= {line.split("==")[0] for line in pins(locked)}
    assert pins(serving_lock.LOCK.read_text()) <= pins(locked) <= pins(serving_lock.DEV_LOCK.read_text())
