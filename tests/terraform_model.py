"""A synthesized stack as Terraform itself would order it, without Google Cloud.

Each resource becomes a `terraform_data` resource (built into Terraform, no provider to fetch)
with the same dependencies (its references and depends_on), the same create_before_destroy,
and `triggers_replace` on the fields the Google provider cannot change in place, so that the real
Terraform CLI plans and applies a change between two synths with its own graph: which objects
it creates, updates, replaces or deletes, and in what order (`terraform graph -type=apply`).
"""

import json
import os
import re
import subprocess
from pathlib import Path

TERRAFORM = os.environ.get("TERRAFORM_BINARY_NAME") or "terraform"
# Fields whose change replaces the resource (ForceNew in the provider) for the resources the
# serving stack has: names, places, who is granted what, what a wait waits for, a NEG's target.
REPLACED_BY = ("name", "location", "region", "bucket", "role", "member", "account_id", "triggers",
               "create_duration", "cloud_run")  # fmt: skip
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_REFERENCE = re.compile(r"\b([a-z][a-z0-9_]*)\.([A-Za-z][A-Za-z0-9_-]*)\.[a-z_]+")


def data_name(address: str) -> str:
    """`kind.name` -> the name of its terraform_data stand-in."""
    kind, name = address.split(".", 1)
    return f"{kind}__{name}"


def model(stack: dict) -> dict:
    """The Terraform JSON of stand-ins for every resource of `stack` (a cdk.tf.json)."""
    resources = {f"{kind}.{name}": body for kind, named in stack["resource"].items() for name, body in named.items()}

    def stand_in(value):
        if isinstance(value, dict):
            return {key: stand_in(item) for key, item in value.items()}
        if isinstance(value, list):
            return [stand_in(item) for item in value]
        if isinstance(value, str):
            return _INTERPOLATION.sub(interpolation, value)
        return value

    def interpolation(match: re.Match) -> str:
        referenced = [f"{kind}.{name}" for kind, name in _REFERENCE.findall(match.group(1))]
        # A data source (the image digest) is read at plan: a plain value here.
        return "".join(f"${{terraform_data.{data_name(a)}.id}}" for a in referenced if a in resources) or "value"

    data = {}
    for address, body in resources.items():
        fields = {key: value for key, value in body.items() if key not in ("depends_on", "lifecycle", "provider")}
        stand = {
            "input": stand_in({key: value for key, value in fields.items() if key not in REPLACED_BY}),
            "triggers_replace": stand_in({key: value for key, value in fields.items() if key in REPLACED_BY}),
        }
        if body.get("depends_on"):
            stand["depends_on"] = [f"terraform_data.{data_name(a)}" for a in body["depends_on"]]
        if body.get("lifecycle", {}).get("create_before_destroy"):
            stand["lifecycle"] = {"create_before_destroy": True}
        data[data_name(address)] = stand
    return {"resource": {"terraform_data": data}}


class Workspace:
    """A directory where the stand-ins of one deployment are applied, changed and planned."""

    def __init__(self, path: Path):
        self.path = path

    def run(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
        env.pop("TF_CLI_CONFIG_FILE", None)
        result = subprocess.run(
            [TERRAFORM, *args, "-no-color"], cwd=self.path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def deploy(self, stack: dict, *args: str) -> None:
        (self.path / "main.tf.json").write_text(json.dumps(model(stack)))
        if not (self.path / ".terraform.lock.hcl").exists() and not (self.path / ".terraform").exists():
            self.run("init")
        self.run("apply", "-auto-approve", *args)

    def plan(self, stack: dict, *args: str) -> "Plan":
        (self.path / "main.tf.json").write_text(json.dumps(model(stack)))
        self.run("plan", "-out=change.plan", *args)
        shown = json.loads(self.run("show", "-json", "change.plan").stdout)
        graph = self.run("graph", "-type=apply", "-plan=change.plan").stdout
        return Plan(shown, graph)


class Plan:
    """What Terraform would do (actions by address) and the order it would do it in."""

    _EDGE = re.compile(r'^\s*"\[root\] ([^"]+)" -> "\[root\] ([^"]+)"$', re.M)

    def __init__(self, shown: dict, graph: str):
        self.actions = {
            change["name"]: change["change"]["actions"]
            for change in shown.get("resource_changes", [])
            if change["change"]["actions"] != ["no-op"]
        }
        self.after: dict[str, set[str]] = {}
        for later, earlier in self._EDGE.findall(graph):
            self.after.setdefault(later, set()).add(earlier)

    def action(self, address: str) -> list[str]:
        return self.actions.get(data_name(address), ["no-op"])

    def comes_after(self, later: str, earlier: str) -> bool:
        """Whether graph node `later` runs only once `earlier` is done, e.g. `X (destroy)`."""
        seen, todo = set(), [later]
        while todo:
            for node in self.after.get(todo.pop(), ()):
                if node == earlier:
                    return True
                if node not in seen:
                    seen.add(node)
                    todo.append(node)
        return False


def target(address: str) -> str:
    """The -target option that applies only the stand-in of `address` (and what it depends on)."""
    return f"-target=terraform_data.{data_name(address)}"


def node(address: str, destroy: bool = False) -> str:
    """The apply-graph node of a stand-in's create or update (or its destroy)."""
    return f"terraform_data.{data_name(address)}" + (" (destroy)" if destroy else "")
