"""The settings reference (docs/settings.md), generated from the settings' own declarations.

`python cdktf/main.py --settings-reference > docs/settings.md` writes it; a test fails when the
committed page differs from what this prints, so the page cannot drift from the code.
"""

from collections.abc import Iterable

from function.settings import REFERENCE as SERVICE_REFERENCE
from secure_endpoint.app import STACK
from secure_endpoint.bootstrap_settings import BOOTSTRAP_SETTINGS
from secure_endpoint.declared import Setting
from secure_endpoint.settings import SETTINGS

INTRO = """\
# Settings reference

Every setting is an environment variable (or a variable on make's command line:
`make deploy PROJECT_ID=…`). `make synth`, `make deploy`, `make bootstrap`, `make upload` and
`make publish` check all of theirs before anything installs or starts, and name every missing or
bad one in the same run, one line each, with what would satisfy it. Strings that reach Terraform
are held to their grammar (a project id, a region, a bucket, a `gs://` URI with a plain object
name, an image reference, a domain), so no setting can carry a Terraform expression (`${…}`,
`%{…}`).

This page is generated from the settings' declarations in the code
(`python cdktf/main.py --settings-reference > docs/settings.md`); a test fails when they differ.
"""

SERVING = """\
## The endpoint (`make synth`, `make deploy`, `make destroy`, `make check-ip`, `make endpoint`, `make verify`)
"""

BOOTSTRAP = """\
## The bootstrap (`make bootstrap`)

It reads {shared} as the endpoint does and needs neither `ALLOWED_IP_RANGES` nor `MODEL_URI`.
It names buckets after the project (`PROJECT_ID_cloudbuild`, and the state bucket by default):
a project id that Cloud Storage would refuse in a bucket name, such as one containing `google`,
is refused here, naming the rule.
"""

STACKS = """\
## Which stacks (`make synth`)
"""

SERVICE = """\
## The service (the container, `make run`)

Read when the service starts; a bad value stops start-up naming the variable and the value.
"""

# Read by the libraries the service runs on, not by its own settings.
LIBRARY_ROWS = (
    ("PORT", "5000 in the container", "listen port (functions-framework)"),
    ("STORAGE_EMULATOR_HOST", "unset",
     "honoured by google-cloud-storage; the tests point it at a local emulator"),
)  # fmt: skip


def settings_reference() -> str:
    shared = [s for s in BOOTSTRAP_SETTINGS if s in SETTINGS and s.name != "MODEL_URI"]
    own = [s for s in BOOTSTRAP_SETTINGS if s not in SETTINGS]
    names = " and ".join(f"`{s.name}`" for s in shared)
    parts = [
        INTRO,
        SERVING,
        _table(_rows(SETTINGS)),
        BOOTSTRAP.format(shared=names),
        _table(_rows(own)),
        STACKS,
        _table(_rows([STACK])),
        SERVICE,
        _table([*SERVICE_REFERENCE, *LIBRARY_ROWS]),
    ]
    return "\n".join(parts)


def _rows(settings: Iterable[Setting]) -> list[tuple[str, str, str]]:
    return [(s.name, s.default_text, s.meaning) for s in settings]


def _table(rows: Iterable[tuple[str, str, str]]) -> str:
    lines = ["| variable | meaning | default |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {meaning} | {default} |" for name, default, meaning in rows]
    return "\n".join(lines) + "\n"
