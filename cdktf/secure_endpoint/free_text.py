"""Free text in the Terraform JSON: descriptions, owners, anything no grammar holds.

Terraform evaluates `${…}` and `%{…}` in every string of the JSON; `$${` and `%%{` are its escapes
for the two characters themselves. Constructs pass free text through `literal`; what reads the
JSON back (check-ip's rules) passes it through `unliteral`, so both see the text as written.
"""


def literal(text: str) -> str:
    """`text` as Terraform reads it literally: `${` and `%{` escaped as `$${` and `%%{`."""
    return text.replace("${", "$${").replace("%{", "%%{")


def unliteral(text: str) -> str:
    """What `literal` was given, from what it made."""
    return text.replace("$${", "${").replace("%%{", "%{")
