"""The cdktf app (see cdktf.json), and the settings check the Makefile runs before cdktf starts.

    main.py                      builds the stacks STACK names: `bootstrap`, `secure-inference`,
                                 or both when STACK is unset (what a plain `cdktf synth` writes)
    main.py --check NAME         checks the settings of NAME (a stack, or `all`) without loading
                                 cdktf: exit 0 when good, 2 with one line per bad setting
    main.py --settings-reference the settings reference (docs/settings.md) as Markdown
"""

import argparse
import os
import sys
from pathlib import Path

# The storage naming rules (training.buckets) and the service's settings live beside cdktf/.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from secure_endpoint.app import ALL, SETTINGS, read_settings, synthesize  # noqa: E402
from secure_endpoint.settings import SettingsError  # noqa: E402

EXIT_BAD_SETTINGS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", metavar="NAME", help=f"{', '.join(SETTINGS)} or {ALL}")
    parser.add_argument(
        "--settings-reference", action="store_true", help="print docs/settings.md's text"
    )
    args = parser.parse_args(argv)
    if args.settings_reference:
        from secure_endpoint.reference import settings_reference

        sys.stdout.write(settings_reference())
        return 0
    name = args.check if args.check is not None else os.environ.get("STACK", "")
    try:
        settings = read_settings(name, os.environ)
    except SettingsError as error:
        for line in error.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.check is None:
        synthesize(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
