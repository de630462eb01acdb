"""Cloud Storage names as Cloud Storage accepts them, checked before any call is made.

Shared by the training-side tools (`make upload`, `make publish`) and the infrastructure's
settings (`make bootstrap`, `make synth`), which add the repository's root to their path for it.
"""

import ipaddress
import re

# Cloud Storage's naming rules for buckets:
# https://cloud.google.com/storage/docs/buckets#naming
_BUCKET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{1,220}[a-z0-9])")
# "Bucket names cannot begin with the "goog" prefix" and "cannot contain "google" or close
# misspellings, such as "g00gle"": zeros for o's, a one for the l, an o doubled or dropped.
RESERVED_PREFIX = "goog"
_GOOGLE_LIKE = re.compile(r"g[o0]+g[l1]e")
# The README's YOUR_BUCKET and its cousins, `<bucket>`, and a variable the shell did not expand.
_PLACEHOLDER = re.compile(r"your[-_.]?(?:model[-_.]?)?bucket|^<.*>$|^\$", re.IGNORECASE)

# Object names (https://cloud.google.com/storage/docs/objects#naming): 1 to 1024 bytes of UTF-8,
# no carriage return or line feed, not "." or "..", not under .well-known/acme-challenge/. A
# model's name is held to the plain part of that: what a path of the documentation's examples
# uses, so that nothing in it means something to a shell, a URL or Terraform (`${`, `%{`).
MAX_OBJECT_NAME_BYTES = 1024
_PLAIN_OBJECT_NAME = re.compile(r"[A-Za-z0-9._~+=@,:/-]+")
PLAIN_OBJECT_CHARACTERS = "letters, digits and . _ ~ + = @ , : / -"


def bucket_name_problem(name: str) -> str | None:
    """Why `name` cannot be a bucket's name (the rule it breaks), or None when it can."""
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
    if name.startswith(RESERVED_PREFIX):
        return f"Cloud Storage refuses bucket names that begin with {RESERVED_PREFIX!r}"
    google = _GOOGLE_LIKE.search(name)
    if google:
        return (
            "Cloud Storage refuses bucket names that contain 'google' or a close misspelling "
            f"such as 'g00gle' (this one contains {google.group()!r})"
        )
    return None


def object_name_problem(name: str) -> str | None:
    """Why `name` is not a plain object name, or None when it is."""
    if not name:
        return "an object name after the bucket"
    if name.endswith("/"):
        return "an object, not a folder ending in '/'"
    if len(name.encode()) > MAX_OBJECT_NAME_BYTES:
        return f"an object name of at most {MAX_OBJECT_NAME_BYTES} bytes"
    if not _PLAIN_OBJECT_NAME.fullmatch(name):
        return f"a plain object name: {PLAIN_OBJECT_CHARACTERS}"
    if any(part in (".", "..") for part in name.split("/")):
        return "an object name without '.' or '..' parts"
    if name.startswith(".well-known/acme-challenge/"):
        return "an object name outside .well-known/acme-challenge/, which Cloud Storage refuses"
    return None
