"""What may be recorded and stored: counts within PostgreSQL's bigint, distinct keys of bounded length (pure).

Bad input is refused where it enters (`check_count`) or made storable without losing exactness
(`saturate`, `bounded_key`), so that no recorded value can make a flush fail.
"""

from __future__ import annotations

import hashlib
import operator
from typing import SupportsIndex

__all__ = ["BIGINT_MAX", "BIGINT_MIN", "LONG_KEY_MARK", "MAX_KEY_BYTES", "bounded_key", "check_count", "saturate"]

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1

# A stored distinct key longer than this (in UTF-8 bytes) is replaced by its SHA-256 digest. With a
# category of at most 200 characters (800 bytes), an index entry stays far below PostgreSQL's limit
# of about 2,700 bytes, whatever the ID.
MAX_KEY_BYTES = 512

# Never the first byte of UTF-8 text: a digest can never equal a short key stored as it is.
LONG_KEY_MARK = b"\xff"


def check_count(n: object) -> int:
    """`n` as a count for `add()`: an integer within the signed 64-bit range.

    Raises `TypeError` for anything that is not an integer (floats, strings, None) and for `bool`
    (a flag passed by mistake), and `ValueError` outside [-2**63, 2**63 - 1]. Integer types other
    than `int` (numpy's, `IntEnum`) are accepted through `__index__`.
    """
    if type(n) is not int:
        if isinstance(n, bool):
            raise TypeError("a count must be an integer, not bool")
        if not isinstance(n, SupportsIndex):
            raise TypeError(f"a count must be an integer, not {type(n).__name__}")
        n = operator.index(n)
    if not BIGINT_MIN <= n <= BIGINT_MAX:
        raise ValueError("a count must be within the signed 64-bit range [-2**63, 2**63 - 1]")
    return n


def saturate(n: int) -> int:
    """`n` clamped to the signed 64-bit range (a sum of many valid counts may leave it)."""
    return BIGINT_MAX if n > BIGINT_MAX else BIGINT_MIN if n < BIGINT_MIN else n


def bounded_key(raw: bytes) -> bytes:
    """A stored distinct key of at most `MAX_KEY_BYTES` + 1 bytes: `raw` itself when short enough,
    else a mark byte and the SHA-256 digest of `raw` (equal IDs give equal digests in every process,
    so distinct counts stay exact)."""
    if len(raw) <= MAX_KEY_BYTES:
        return raw
    return LONG_KEY_MARK + hashlib.sha256(raw).digest()
