"""Making names from requests and callers harmless to store (pure)."""

from __future__ import annotations

from .counters import OTHER

__all__ = ["MAX_NAME", "clean_name"]

MAX_NAME = 200


def clean_name(name: object) -> str:
    """`name` as storable text: a string without NUL or unpaired surrogates, at most `MAX_NAME` characters.

    Names are stored verbatim otherwise (quotes, semicolons and SQL are only data: every query is
    parameterised). Anything else is stored as `str(name)`, or as `<other>` when that raises: a name
    that cannot be turned into text must not make a flush fail.
    """
    if isinstance(name, str):
        text = name
    else:
        try:
            text = str(name)
        except Exception:
            text = OTHER
    if "\x00" in text:
        text = text.replace("\x00", "")
    if len(text) > MAX_NAME:
        text = text[:MAX_NAME]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
