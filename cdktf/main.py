"""The cdktf app (see cdktf.json), and the settings check the Makefile runs before cdktf starts.

    main.py                builds the stacks named by STACK: `bootstrap`, `secure-inference`, or
                           both when STACK is unset (what `cdktf synth` writes)
    main.py --check NAME   checks the settings of NAME (a stack, or `all`) and exits: 0 when good,
                           2 with one line naming the setting otherwise; cdktf is not loaded

cdktf runs the app for every command and never tells it which stack a command is for, so the
Makefile says it through STACK: `make bootstrap` does not need the serving stack's settings.
"""

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings
from secure_endpoint.settings import STACK_NAME, EndpointSettings, SettingsError

ALL = "all"
SETTINGS = {BOOTSTRAP_STACK: BootstrapSettings, STACK_NAME: EndpointSettings}
EXIT_BAD_SETTINGS = 2


def stacks_named(name: str) -> tuple[str, ...]:
    name = name.strip() or ALL
    if name == ALL:
        return tuple(SETTINGS)
    if name not in SETTINGS:
        raise SettingsError(f"STACK: expected one of {', '.join(SETTINGS)} or {ALL}, got {name!r}")
    return (name,)


def read_settings(name: str, environ: Mapping[str, str] = os.environ) -> dict:
    """Each named stack's settings, checked; the first bad one raises SettingsError."""
    return {stack: SETTINGS[stack].from_env(environ) for stack in stacks_named(name)}


def synthesize(settings: dict) -> None:
    # Loading the provider through jsii takes seconds: only once the settings are known good.
    from cdktf import App

    from secure_endpoint.bootstrap import BootstrapStack
    from secure_endpoint.stack import SecureEndpointStack
    from secure_endpoint.synthesized import record_settings

    app = App()
    if BOOTSTRAP_STACK in settings:
        BootstrapStack(app, BOOTSTRAP_STACK, settings=settings[BOOTSTRAP_STACK])
    if STACK_NAME in settings:
        SecureEndpointStack(app, STACK_NAME, settings=settings[STACK_NAME])
    app.synth()
    if STACK_NAME in settings:
        record_settings(Path(app.outdir), settings[STACK_NAME])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="NAME", help=f"{', '.join(SETTINGS)} or {ALL}")
    args = parser.parse_args(argv)
    try:
        settings = read_settings(args.check if args.check is not None else os.environ.get("STACK", ""))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.check is None:
        synthesize(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
