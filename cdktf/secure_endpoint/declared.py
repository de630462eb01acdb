"""Settings as declarations, read all at once: every bad or missing one is named in one run.

A Setting is a name, a default, a meaning and a parser. `Reading` reads declarations from the
environment and collects what is wrong instead of stopping at the first; `done()` raises one
SettingsError whose lines name each variable. The settings reference (docs/settings.md) is
generated from the same declarations (`secure_endpoint.reference`).
"""

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from secure_endpoint.grammar import Invalid

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# ASCII digits only: int() also takes "１０", "1_000" and "+5", which no other tool reading the
# same variable would.
_WHOLE_NUMBER = re.compile(r"[0-9]+")


class SettingsError(ValueError):
    """One line per bad or missing setting, each starting with the variable's name."""

    def __init__(self, lines: str | Iterable[str]):
        self.lines = (lines,) if isinstance(lines, str) else tuple(lines)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it means, how it is read, and what it is when unset."""

    name: str
    meaning: str
    parse: Callable[[str], Any]
    default: Any = None
    # How the reference shows the default when the value alone would not say it.
    shown_default: str | None = None
    # Set for a required setting: what to give, said when it is missing ("expected …").
    required: str | None = None

    @property
    def default_text(self) -> str:
        if self.required is not None:
            return "required"
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "`true`" if self.default else "`false`"
        return f"`{self.default}`"


class Reading:
    """The settings of one environment, read one declaration at a time; problems are kept."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[str] = []
        self.refused: set[str] = set()

    def raw(self, setting: Setting) -> str:
        return self.environ.get(setting.name, "").strip()

    def __call__(self, setting: Setting) -> Any:
        """The parsed value, the default when unset; None (and a problem kept) when bad or missing."""
        raw = self.raw(setting)
        if not raw:
            if setting.required is not None:
                self.refuse(setting.name, f"required; expected {setting.required}, got nothing")
                return None
            return setting.default
        try:
            return setting.parse(raw)
        except Invalid as error:
            self.refuse(setting.name, str(error))
            return None

    def refuse(self, name: str, message: str) -> None:
        self.problems.append(f"{name}: {message}")
        self.refused.add(name)

    def good(self, *names: str) -> bool:
        """None of these was refused (a later check that needs them can run)."""
        return not self.refused.intersection(names)

    def done(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"

    def parse(raw: str) -> int:
        value = int(raw) if _WHOLE_NUMBER.fullmatch(raw) else minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            raise Invalid(f"expected a whole number {bounds}, got {raw!r}")
        return value

    return parse


def fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise Invalid(f"expected a fraction from 0 to 1, such as 0.01, got {raw!r}")
    return value


def positive_fraction(raw: str) -> float:
    """A fraction above 0 and at most 1: a threshold of 0 would hold always."""
    value = fraction(raw) if raw.strip() else math.nan
    if value == 0:
        raise Invalid(f"expected a fraction above 0 and at most 1, such as 0.05, got {raw!r}")
    return value


def boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise Invalid(f"expected true or false, got {raw!r}")
