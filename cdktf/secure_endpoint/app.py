"""Which stacks the cdktf app builds, and their settings, checked before any is built.

cdktf runs the app for every command and never tells it which stack the command is for, so the
Makefile says it through STACK: `make bootstrap` does not need the serving stack's settings.
"""

from collections.abc import Mapping
from pathlib import Path

from secure_endpoint.declared import Setting
from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings
from secure_endpoint.settings import STACK_NAME, EndpointSettings, SettingsError

ALL = "all"
SETTINGS = {BOOTSTRAP_STACK: BootstrapSettings, STACK_NAME: EndpointSettings}
STACK = Setting(
    "STACK",
    f"which stacks the app builds: `{BOOTSTRAP_STACK}`, `{STACK_NAME}`, or both (`{ALL}`); the "
    "Makefile sets it for each command",
    str,
    shown_default="both",
)


def stacks_named(name: str) -> tuple[str, ...]:
    name = name.strip() or ALL
    if name == ALL:
        return tuple(SETTINGS)
    if name not in SETTINGS:
        raise SettingsError(f"STACK: expected one of {', '.join(SETTINGS)} or {ALL}, got {name!r}")
    return (name,)


def read_settings(name: str, environ: Mapping[str, str]) -> dict:
    """Each named stack's settings, checked; one SettingsError names every bad one, once."""
    settings, problems = {}, []
    for stack in stacks_named(name):
        try:
            settings[stack] = SETTINGS[stack].from_env(environ)
        except SettingsError as error:
            # Both stacks read PROJECT_ID and REGION: a bad one is said once.
            problems.extend(line for line in error.lines if line not in problems)
    if problems:
        raise SettingsError(problems)
    return settings


def synthesize(settings: dict, outdir: Path | None = None) -> Path:
    """Builds and writes the stacks `settings` holds; returns where."""
    # Loading the provider through jsii takes seconds: only once the settings are known good.
    from cdktn import Annotations, App

    from secure_endpoint.bootstrap import BootstrapStack
    from secure_endpoint.stack import SecureEndpointStack
    from secure_endpoint.synthesized import record_settings

    app = App(outdir=str(outdir)) if outdir else App()
    if BOOTSTRAP_STACK in settings:
        BootstrapStack(app, BOOTSTRAP_STACK, settings=settings[BOOTSTRAP_STACK])
    if STACK_NAME in settings:
        stack = SecureEndpointStack(app, STACK_NAME, settings=settings[STACK_NAME])
        # cdktf-cli prints annotations as `WARN [stack]: …`; whatever the app writes on stderr it
        # prints as an error, and a synth that went well would read as one that did not.
        for warning in settings[STACK_NAME].warnings():
            Annotations.of(stack).add_warning(warning)
    app.synth()
    if STACK_NAME in settings:
        record_settings(Path(app.outdir), settings[STACK_NAME])
    return Path(app.outdir)
