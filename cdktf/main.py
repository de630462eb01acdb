"""The cdktf app (see cdktf.json), and the settings check the Makefile runs before cdktf starts.

    main.py                builds the stacks STACK names: `bootstrap`, `secure-inference`, or both
                           when STACK is unset (what a plain `cdktf synth` writes)
    main.py --check NAME   checks the settings of NAME (a stack, or `all`) without loading cdktf:
                           exit 0 when good, 2 with one line naming the bad setting
"""

import argparse
import os
import sys

from secure_endpoint.app import ALL, SETTINGS, read_settings, synthesize
from secure_endpoint.settings import SettingsError

EXIT_BAD_SETTINGS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", metavar="NAME", help=f"{', '.join(SETTINGS)} or {ALL}")
    args = parser.parse_args(argv)
    name = args.check if args.check is not None else os.environ.get("STACK", "")
    try:
        settings = read_settings(name, os.environ)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.check is None:
        synthesize(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
