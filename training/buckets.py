"""Cloud Storage bucket names as the training-side tools check them before any call is made."""

import ipaddress
import re

# Cloud Storage's naming rules for buckets:
# https://cloud.google.com/storage/docs/buckets#naming
_BUCKET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{1,220}[a-z0-9])")
# The README's YOUR_BUCKET and its cousins, `<bucket>`, and a variable the shell did not expand.
_PLACEHOLDER = re.compile(r"your[-_.]?(?:model[-_.]?)?bucket|^<.*>$|^\$", re.IGNORECASE)


def bucket_name_problem(name: str) -> str | None:
    """Why `name` cannot be a bucket's name, or None when it can."""
    if name.startswith("gs://"):
        return "give the bare name, without gs://"
    if _PLACEHOLDER.search(name):
        return "that is the documentation's placeholder; give your own bucket's name"
    if not _BUCKET_NAME.fullmatch(name):
        return (
            "3 to 222 characters: lowercase letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or a digit"
        )
    if any(len(part) > 63 for part in name.split(".")):
        return "at most 63 characters, or 63 between dots"
    if ".." in name:
        return "no empty part between dots"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "not an IP address"
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "names that start with 'goog' or contain 'google' are reserved"
    return None
