"""A JSON body with a key given twice in one object, at any depth, is refused.

orjson, like most parsers, keeps the last value of a key given twice and drops the others, where
another reader of the same body (a WAF in front) may judge the first: two readers, two bodies.
`function.app` calls this only for the bodies where a key may have been dropped (see
`_parse_json`), so the common request pays for one count, not for this.
"""

import json
import re

from function.errors import BadRequest, quoted

# A string (escapes and all), or one of the characters that open, close or separate. Anything
# else (numbers, true, false, null, spaces, commas) is of no interest here.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')
_OPEN_OBJECT, _OPEN_ARRAY, _COLON, _QUOTE = ord("{"), ord("["), ord(":"), ord('"')


def duplicate_key(body: bytes) -> str | None:
    """The first key given twice in one object of `body`, a valid JSON document; None if none.
    Keys are compared as parsed: `"a"` and `"\\u0061"` are one key. Iterative: any depth."""
    objects: list[set[str] | None] = []  # one entry per open container; None for an array
    last = b""
    for match in _TOKEN.finditer(body):
        token = match.group()
        first = token[0]
        if first == _QUOTE:
            last = token
        elif first == _COLON:
            key = json.loads(last) if b"\\" in last else last[1:-1].decode()
            keys = objects[-1]
            if keys is not None:
                if key in keys:
                    return key
                keys.add(key)
        elif first == _OPEN_OBJECT:
            objects.append(set())
        elif first == _OPEN_ARRAY:
            objects.append(None)
        else:
            objects.pop()
    return None


def refuse_duplicate_keys(body: bytes) -> None:
    """BadRequest naming the first key given twice in one object of `body`, if there is one."""
    key = duplicate_key(body)
    if key is not None:
        raise BadRequest(
            f"expected each key once in an object, got {quoted(key)} more than once (a reader "
            "that keeps the first would see another request than this service)"
        )
