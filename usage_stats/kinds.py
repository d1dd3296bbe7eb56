"""The one-letter tags of what is recorded: kept as strings (they ride the request path in tuples),
named and typed here."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["COUNT", "USER", "VISITOR", "EntryKind", "SeenKind"]

SeenKind = Literal["u", "v"]  # a distinct key: a user's ID, or a visitor's network
EntryKind = Literal["c", "u", "v"]  # an entry of the recording inbox: a count, or a distinct key

USER: Final = "u"
VISITOR: Final = "v"
COUNT: Final = "c"
