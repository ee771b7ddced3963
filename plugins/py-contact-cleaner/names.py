"""Person names: whitespace, case, titles, and "LAST, First" order."""

from __future__ import annotations

import re

#: Honorifics dropped from the front of a name (compared without the dot).
TITLES = frozenset("dr mr mrs ms miss mx prof sir dame herr frau mme mlle".split())
#: Surname particles kept in lower case inside a last name ("van der Berg").
PARTICLES = frozenset("van von der den de del della da di du la le ten ter".split())


def squash(text: str | None) -> str:
    """Trim, and collapse every run of whitespace to one space."""
    return " ".join((text or "").split())


def _strip_titles(words: list[str]) -> list[str]:
    while len(words) > 1 and words[0].rstrip(".").lower() in TITLES:
        words = words[1:]
    return words


def _case_part(part: str) -> str:
    """Title-case a part written all upper or all lower; keep mixed case
    ("McDonald", "DeVries") as the person wrote it."""
    if part.isupper() or part.islower():
        return part[:1].upper() + part[1:].lower()
    return part


def _case_word(word: str, particle_allowed: bool) -> str:
    """Case each part of a word between hyphens and apostrophes on its own
    ("BYRON-king" → "Byron-King", "o'neil" → "O'Neil")."""
    if particle_allowed and word.lower() in PARTICLES and (word.isupper() or word.islower()):
        return word.lower()
    return "".join(_case_part(p) for p in re.split(r"([-'’])", word))


def case_name(name: str, is_last: bool = False) -> str:
    """Case each word; in a last name, particles before the final word stay
    lower case ("van Beethoven")."""
    words = [w for w in name.split(" ") if w]
    return " ".join(_case_word(w, is_last and i < len(words) - 1) for i, w in enumerate(words))


def split_full(full: str) -> tuple[str, str]:
    """(first, last) of a full name: "LAST, First" when there is a comma,
    else the last word is the last name (after leading particles)."""
    full = squash(full)
    if "," in full:
        last, _, first = full.partition(",")
        first_words = _strip_titles(squash(first).split())
        return " ".join(first_words), squash(last)
    words = _strip_titles(full.split())
    if len(words) == 1:
        return "", words[0]
    cut = len(words) - 1
    while cut > 1 and words[cut - 1].lower() in PARTICLES:
        cut -= 1
    return " ".join(words[:cut]), " ".join(words[cut:])


def clean(first: str | None, last: str | None, full: str | None) -> tuple[str, str] | None:
    """The cleaned (first, last), or `None` when there is no name at all."""
    first, last = squash(first), squash(last)
    if not first and not last:
        if not squash(full):
            return None
        first, last = split_full(full or "")
    elif not last:
        first, last = split_full(first)
    elif not first and "," in last:
        first, last = split_full(last)
    else:
        first = " ".join(_strip_titles(first.split()))
    if not first and not last:
        return None
    return case_name(first), case_name(last, is_last=True)
