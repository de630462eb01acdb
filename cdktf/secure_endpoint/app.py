"""Which stacks the cdktf app builds, and their settings, checked before any is built.

cdktf runs the app for every command and never tells it which stack the command is for, so the
Makefile says it through STACK: `make bootstrap` does not need the serving stack's settings.
"""

from collections.abc import Mapping
from pathlib import Path

from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings
from secure_endpoint.settings import STACK_NAME, EndpointSettings, SettingsError

ALL = "all"
SETTINGS = {BOOTSTRAP_STACK: BootstrapSettings, STACK_NAME: EndpointSettings}


def stacks_named(name: str) -> tuple[str, ...]:
    name = name.strip() or ALL
    if name == ALL:
        return tuple(SETTINGS)
    if name not in SETTINGS:
        raise SettingsError(f"STACK: expected one of {', '.join(SETTINGS)} or {ALL}, got {name!r}")
    return (name,)


def read_settings(name: str, environ: Mapping[str, str]) -> dict:
    """Each named stack's settings, checked; the first bad one raises SettingsError."""
    return {stack: SETTINGS[stack].from_env(environ) for stack in stacks_named(name)}


def synthesize(settings: dict, outdir: Path | None = None) -> Path:
    """Builds and writes the stacks `settings` holds; returns where."""
    # Loading the provider through jsii takes seconds: only once the settings are known good.
    from cdktn import App

    from secure_endpoint.bootstrap import BootstrapStack
    from secure_endpoint.stack import SecureEndpointStack
    from secure_endpoint.synthesized import record_settings

    app = App(outdir=str(outdir)) if outdir else App()
    if BOOTSTRAP_STACK in settings:
        BootstrapStack(app, BOOTSTRAP_STACK, settings=settings[BOOTSTRAP_STACK])
    if STACK_NAME in settings:
        SecureEndpointStack(app, STACK_NAME, settings=settings[STACK_NAME])
    app.synth()
    if STACK_NAME in settings:
        record_settings(Path(app.outdir), settings[STACK_NAME])
    return Path(app.outdir)
