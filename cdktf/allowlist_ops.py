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
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The storage naming rules the settings use (training.buckets) live beside cdktf/.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from secure_endpoint.allowlist import AllowlistError  # noqa: E402
from secure_endpoint.allowlist_diff import Replay, Side, range_report  # noqa: E402
from secure_endpoint.allowlist_file import VARIABLE, expiry_warnings, load_allowlist_file, now_utc  # noqa: E402
from secure_endpoint.armor import PolicyError, check_policy  # noqa: E402
from secure_endpoint.cloud_ranges import CloudRangesError  # noqa: E402
from secure_endpoint.cloud_ranges_refresh import refresh  # noqa: E402
from secure_endpoint.log_export import LogExportError, ReadStats, read_requests  # noqa: E402
from secure_endpoint.plan import POLICY_NAME, plan_rules  # noqa: E402
from secure_endpoint.settings import EndpointSettings, SettingsError  # noqa: E402

EXIT_SAME, EXIT_CHANGED, EXIT_ERROR = 0, 1, 2


class DiffError(Exception):
    """One line for the user; exit 2."""


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


def main(argv: list[str] | None = None, live_factory=None) -> int:
    parser = argparse.ArgumentParser(prog="allowlist_ops", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("warnings", help="entries that lapse within 14 days")
    compare = commands.add_parser("diff", help="whose access the allowlist change cuts or opens")
    compare.add_argument(
        "--base", type=Path, help="an earlier ALLOWLIST_FILE (default: the live policy)"
    )
    compare.add_argument(
        "--logs", type=Path, help="a request log export: JSON array or lines, maybe gzip"
    )
    fresh = commands.add_parser(
        "refresh-cloud-ranges", help="fresh snapshots of the clouds' ranges"
    )
    fresh.add_argument("--azure", type=Path, help="a downloaded ServiceTags_Public_YYYYMMDD.json")
    args = parser.parse_args(argv)
    if args.command == "warnings":
        return warnings()
    if args.command == "diff":
        return diff(args.base, args.logs, live_factory)
    if args.command == "refresh-cloud-ranges":
        return refresh_cloud_ranges(args.azure)
    return EXIT_ERROR


def diff(
    base: Path | None,
    logs: Path | None,
    live_factory=None,
    environ=os.environ,
    now: datetime | None = None,
) -> int:
    try:
        before, after = _sides(base, live_factory, environ, now)
        print(f"before: {before.label}\nafter:  {after.label}")
        lines, ranges_differ = range_report(before, after)
        print("\n".join(lines))
        if logs is None:
            return EXIT_CHANGED if ranges_differ else EXIT_SAME
        stats, replay = ReadStats(), Replay(before, after)
        for request in read_requests(logs, stats):
            replay.feed(request)
    except (DiffError, LogExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"replayed {stats.entries:,} log entries of {logs}: {replay.requests:,} requests; "
        f"{stats.malformed:,} malformed entries skipped, {stats.without_address:,} without httpRequest.remoteIp"
    )
    for example in stats.first_malformed:
        print(f"  malformed {example}")
    print("\n".join(replay.report()))
    return EXIT_CHANGED if replay.changed else EXIT_SAME


def _sides(base: Path | None, live_factory, environ, now) -> tuple[Side, Side]:
    """Before (BASE, or the live policy) and after (the working tree's settings)."""
    now = now or now_utc()
    try:
        settings = EndpointSettings.from_env(environ, now=now)
    except SettingsError as error:
        raise DiffError(f"{error} (the same settings as `make deploy`)") from None
    source = environ.get(VARIABLE, "").strip() or "ALLOWED_IP_RANGES"
    after = Side(
        f"the working tree's {source}", tuple(plan_rules(settings)), settings.allowlist_entries
    )
    if base is not None:
        try:
            earlier = load_allowlist_file(base, now=now, enforce_expiry=False, judge_clouds=False)
        except AllowlistError as error:
            raise DiffError(f"BASE: {error}") from None
        then = dataclasses.replace(
            settings, allowed_ranges=earlier.networks, allowlist_entries=earlier.entries
        )
        before = Side(f"BASE {base}", tuple(plan_rules(then)), earlier.entries)
    else:
        from secure_endpoint.live import Live, LiveError, live_rules

        factory = live_factory or Live.with_default_credentials
        try:
            rules = tuple(live_rules(factory(settings.project_id).policy()))
        except LiveError as error:
            raise DiffError(str(error)) from None
        before = Side(f"the live policy {POLICY_NAME} of project {settings.project_id}", rules)
    for side in (before, after):
        try:
            check_policy(side.rules)
        except PolicyError as error:
            raise DiffError(f"{side.label} cannot be judged: {error}") from None
    return before, after


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
