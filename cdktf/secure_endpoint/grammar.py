"""What each kind of string setting must look like, by its own grammar, before it reaches Terraform.

Terraform evaluates `${…}` and `%{…}` in every string of the JSON it is given, so a setting that
carried one would be an expression, run at plan with the deployer's credentials. None of these
grammars admits `$`, `%`, `{` or `}`; text that is free by nature goes through
`free_text.literal` instead.

Each parser takes the stripped value and returns it (or what it stands for), or raises Invalid
saying what was expected and what was received, without the variable's name.
"""

import re

from training.buckets import bucket_name_problem, object_name_problem

GCS_SCHEME = "gs://"

# The README's placeholders (`your-project-id`, `YOUR_BUCKET`, `your-model-bucket`), a `<name>`
# left as written and a shell variable that was never expanded.
PLACEHOLDER = re.compile(r"^(?:your[-_.]?(?:project|bucket|model|state)|<.*>$|\$)", re.IGNORECASE)

# RFC 1123 host names in lowercase: labels of letters, digits and inner hyphens, at most 63
# characters each and 253 in all, at least two labels; the last starts with a letter (a top-level
# domain is never numeric; `xn--` ones are punycode).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?")
# Project ids: lowercase letters, digits and hyphens, starting with a letter, not ending with a
# hyphen, at most 30 characters; older projects may carry their organisation's domain before a colon.
_PROJECT = re.compile(rf"(?:{_DOMAIN.pattern}:)?[a-z](?:[a-z0-9-]{{0,28}}[a-z0-9])?")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")

# The image reference grammar of the OCI distribution spec (distribution/reference, grammar.go):
#   reference := name [ ":" tag ] [ "@" digest ];  name := [domain "/"] path-component ["/" path-component]*
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE = re.compile(
    rf"(?P<name>(?:{_REGISTRY}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?",
    re.ASCII,
)
MAX_IMAGE_NAME = 255
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
# An address a notification can go to: a plain local part (letters, digits, `.`, `_`, `+`, `-`,
# no leading, trailing or doubled dot) at a domain. Stricter than RFC 5321 on purpose: quoted local
# parts and `%`, `{`, `}`, `$` are refused, and none of them belongs in an on-call address.
_EMAIL = re.compile(rf"(?=.{{3,254}}$)[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@{_DOMAIN.pattern}")


class Invalid(ValueError):
    """`expected …, got …` for one value, without the variable's name."""


def refuse_placeholder(value: str) -> None:
    # Checked before the grammar, whose message would not say why `your-project-id` is wrong.
    if PLACEHOLDER.match(value):
        raise Invalid(f"expected your own value, got the placeholder {value!r}")


def project_id(value: str) -> str:
    refuse_placeholder(value)
    if not _PROJECT.fullmatch(value):
        raise Invalid(
            f"expected a Google Cloud project id, got {value!r}: lowercase letters, digits and "
            "hyphens, starting with a letter, at most 30"
        )
    return value


def region(value: str) -> str:
    if not _REGION.fullmatch(value):
        raise Invalid(f"expected a region such as asia-northeast1, got {value!r}")
    return value


def domain(value: str) -> str:
    if not _DOMAIN.fullmatch(value):
        raise Invalid(
            f"expected a domain name such as api.example.com, got {value!r}: lowercase letters, "
            "digits, hyphens and dots (RFC 1123)"
        )
    return value


def bucket(value: str) -> str:
    """A bucket that exists already, named by Cloud Storage's rules."""
    refuse_placeholder(value)
    problem = bucket_name_problem(value)
    if problem:
        raise Invalid(f"expected a Cloud Storage bucket name, got {value!r}: {problem}")
    return value


def gs_uri(value: str) -> str:
    """`gs://bucket/object`: a bucket by its rules and a plain object name."""
    bucket_name, _, name = value.removeprefix(GCS_SCHEME).partition("/")
    if not value.startswith(GCS_SCHEME) or not bucket_name:
        raise Invalid(f"expected the model's Cloud Storage URI, gs://bucket/object, got {value!r}")
    refuse_placeholder(bucket_name)
    problem = bucket_name_problem(bucket_name)
    if problem is None:
        problem = object_name_problem(name)
        if problem is not None:
            problem = f"expected {problem}"
    if problem:
        raise Invalid(
            f"expected the model's Cloud Storage URI, gs://bucket/object, got {value!r}: {problem}"
        )
    return value


def bucket_of(uri: str) -> str:
    return uri.removeprefix(GCS_SCHEME).split("/", 1)[0]


def image(value: str) -> str:
    """A container image reference, `[registry/]path[:tag][@digest]`, by the OCI grammar."""
    match = _IMAGE.fullmatch(value)
    expected = "expected a container image reference, registry/path[:tag][@sha256:digest]"
    if not match:
        raise Invalid(f"{expected}, got {value!r}")
    if len(match["name"]) > MAX_IMAGE_NAME:
        raise Invalid(f"{expected} with a name of at most {MAX_IMAGE_NAME} characters, got {value!r}")
    digest = match["digest"]
    if digest and digest.startswith("sha256:") and not _SHA256.fullmatch(digest):
        raise Invalid(f"{expected}, a sha256 digest of 64 lowercase hex digits, got {value!r}")
    return value


def email(value: str) -> str:
    """An email address for alert notifications, its domain by RFC 1123 in lowercase."""
    if not _EMAIL.fullmatch(value):
        raise Invalid(
            f"expected an email address such as oncall@example.com, got {value!r}: letters, digits, "
            "`.`, `_`, `+` and `-` before the @, a lowercase domain after it"
        )
    return value
