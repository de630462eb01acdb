"""The allowlist's own commands: `make allowlist-diff`, `make refresh-cloud-ranges`, and the expiry
warnings `make synth` and `make deploy` print.

warnings              ALLOWLIST_FILE's entries that lapse within 14 days (nothing without the file)
diff [--base FILE] [--logs EXPORT]
                      what changes between the deployed allowlist (or FILE) and the working tree's;
                      with EXPORT, every client of the request logs replayed through both policies;
                      exit 0 when no client's verdict changes, 1 when some do, 2 on error, as diff(1)
refresh-cloud-ranges [--azure FILE]
                      fresh snapshots of the clouds' published ranges
"""

import argparse
import os
import sys
from pathlib import Path

from secure_endpoint.allowlist import AllowlistError
from secure_endpoint.allowlist_file import VARIABLE, expiry_warnings, load_allowlist_file, now_utc
from secure_endpoint.cloud_ranges import CloudRangesError
from secure_endpoint.cloud_ranges_refresh import refresh

EXIT_ERROR = 2


def warnings(environ=os.environ, now=None) -> int:
    path = environ.get(VARIABLE, "").strip()
    if not path:
        return 0
    now = now or now_utc()
    try:
        allowlist = load_allowlist_file(Path(path), now=now, enforce_expiry=False)
    except AllowlistError:
        return 0  # the settings check reports it, once
    for line in expiry_warnings(allowlist.entries, now):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="allowlist_ops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("warnings", help="entries that lapse within 14 days")
    fresh = commands.add_parser("refresh-cloud-ranges", help="fresh snapshots of the clouds' ranges")
    fresh.add_argument("--azure", type=Path, help="a downloaded ServiceTags_Public_YYYYMMDD.json")
    args = parser.parse_args(argv)
    if args.command == "warnings":
        return warnings()
    if args.command == "refresh-cloud-ranges":
        return refresh_cloud_ranges(args.azure)
    return EXIT_ERROR


def refresh_cloud_ranges(azure: Path | None, **options) -> int:
    try:
        lines = refresh(azure_file=azure, **options)
    except CloudRangesError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
