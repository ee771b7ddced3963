"""Phone numbers to E.164 (`+` and 8 to 15 digits)."""

from __future__ import annotations

import re

#: Separators people write inside numbers.
_SEPARATORS = re.compile(r"[\s\-./()\u00a0]")


class NotAPhone(ValueError):
    """The text is not a phone number; the message says why."""


def country_code(setting: str) -> str:
    return setting.lstrip("+")


def to_e164(raw: str, default_cc: str) -> str:
    """`raw` in E.164. Numbers without a country code get `default_cc`,
    after dropping the national trunk prefix (0, or 1 in the NANP)."""
    text = raw.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    compact = _SEPARATORS.sub("", text)
    if compact.startswith("+"):
        digits = compact[1:]
        international = True
    elif compact.startswith("00"):
        digits = compact[2:]
        international = True
    else:
        digits = compact
        international = False
    if not digits.isdigit():
        bad = sorted({c for c in digits if not c.isdigit()})
        raise NotAPhone(f"{raw!r} is not a phone number (it contains {''.join(bad)!r})")
    if not international:
        cc = country_code(default_cc)
        trunk = "1" if cc == "1" else "0"
        if cc == "1" and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        elif cc != "1" and digits.startswith(trunk):
            digits = digits[1:]
        digits = cc + digits
    if digits.startswith("0"):
        raise NotAPhone(f"{raw!r} is not a phone number (country codes do not start with 0)")
    if not 8 <= len(digits) <= 15:
        raise NotAPhone(f"{raw!r} is not a phone number ({len(digits)} digits with the country code; E.164 has 8 to 15)")
    return "+" + digits
