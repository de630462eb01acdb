"""`cdktf synth` / `cdktf deploy` entry point (see cdktf.json): settings from the environment."""

import sys
from pathlib import Path

from secure_endpoint.settings import EndpointSettings, SettingsError


def main() -> int:
    try:
        settings = EndpointSettings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Loading the provider through jsii takes seconds: only once the settings are known good.
    from cdktf import App

    from secure_endpoint.settings import STACK_NAME
    from secure_endpoint.stack import SecureEndpointStack
    from secure_endpoint.synthesized import record_settings

    app = App()
    SecureEndpointStack(app, STACK_NAME, settings=settings)
    app.synth()
    record_settings(Path(app.outdir), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
