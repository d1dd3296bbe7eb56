"""Reading a credential from the request's headers, for `UsageMiddleware(user_id=...)` callables."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["bearer_token"]

_SCHEMES = (b"bearer", b"token")


def bearer_token(scope: MutableMapping[str, Any]) -> str | None:
    """The token of an `Authorization: Bearer <token>` (or `Token <token>`) header, else None.

    It only finds the token; verify it as your API does before trusting what it says::

        def user_id(scope):
            token = bearer_token(scope)
            return None if token is None else my_verified_claims(token)["sub"]
    """
    headers = scope.get("headers")
    if not isinstance(headers, (list, tuple)):
        return None
    for item in headers:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        name, value = item
        if not isinstance(name, bytes) or name.lower() != b"authorization" or not isinstance(value, bytes):
            continue
        scheme, _, token = value.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() in _SCHEMES and token:
            return token.decode("latin-1")
        return None
    return None
