"""Anonymisation at collection: addresses cut to a network prefix, keys hashed or replaced (pure)."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from datetime import date

from .bounds import MAX_KEY_BYTES, bounded_key
from .cache import BoundedCache
from .kinds import USER, VISITOR, SeenKind

__all__ = ["AddressCutter", "KeyEncoder", "MemoryPseudonyms", "cut_address", "keyed_hash", "keyed_hashes"]

_CACHE_LIMIT = 65_536


def cut_address(address: str, v4_bits: int = 24, v6_bits: int = 48) -> str | None:
    """Keep the first `v4_bits`/`v6_bits` of a client address and return the network as text.

    An IPv4-mapped IPv6 address is treated as IPv4. Anything that is not an IP address (a host
    name, a zoned IPv6 address, garbage) gives None: such a client counts as no visitor.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:  # zoned (fe80::1%eth0): not a client address we can count
            return None
        mapped = ip.ipv4_mapped
        if mapped is None:
            return str(ipaddress.IPv6Network((ip, v6_bits), strict=False).network_address)
        ip = mapped
    return str(ipaddress.IPv4Network((ip, v4_bits), strict=False).network_address)


class AddressCutter:
    """`cut_address` with a bounded cache, since repeat visitors are the common case."""

    def __init__(self, v4_bits: int, v6_bits: int) -> None:
        self.v4_bits = v4_bits
        self.v6_bits = v6_bits
        self._cache = _Networks(self)

    def __call__(self, address: str) -> str | None:
        try:
            return self._cache[address]
        except TypeError:  # unhashable: not an address
            return None

    def cut_all(self, addresses: set[str]) -> set[str]:
        """The networks of `addresses` (those that are no address left out); cache hits cost no Python."""
        networks: set[str | None] = set(map(self._cache.__getitem__, addresses))
        networks.discard(None)
        return networks  # type: ignore[return-value]

    def cut(self, address: object) -> str | None:
        """`cut_address`, for anything: None unless `address` is a string short enough to be one."""
        if not isinstance(address, str) or len(address) > 64:
            return None
        return cut_address(address, self.v4_bits, self.v6_bits)


class _Networks(BoundedCache[str, "str | None"]):
    """Address -> network, computed on a miss (`__missing__`), so a lookup of a known address is a dict lookup."""

    __slots__ = ("cutter",)

    def __init__(self, cutter: AddressCutter) -> None:
        super().__init__(_CACHE_LIMIT)
        self.cutter = cutter

    def __missing__(self, address: str) -> str | None:
        return self.put(address, self.cutter.cut(address))


def keyed_hash(salt: bytes, kind: SeenKind, value: str) -> bytes:
    """A 16-byte keyed BLAKE2b digest of `value`; `kind` keeps users and visitors apart."""
    data = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, key=salt, digest_size=16).digest()


def keyed_hashes(salt: bytes, kind: SeenKind, values: Iterable[str]) -> list[bytes]:
    """`keyed_hash` of each of `values`, in one tight loop: the salt and the kind are hashed once
    and their state copied for each value (twice as fast as hashing each key from scratch)."""
    prefix = hashlib.blake2b(f"{kind}\x00".encode(), key=salt, digest_size=16)
    out: list[bytes] = []
    append = out.append
    for value in values:
        h = prefix.copy()
        h.update(value.encode("utf-8", "surrogatepass"))
        append(h.digest())
    return out


class MemoryPseudonyms:
    """The `memory` scheme: a random stand-in per key, held in this process and forgotten daily.

    A key seen again the same day gets the same stand-in; the stand-ins of earlier days are
    dropped as soon as a later day is asked for, so nothing links two days.
    """

    def __init__(self) -> None:
        self._day: date | None = None
        self._salt = secrets.token_bytes(32)
        self._users: dict[str, bytes] = {}

    def _for_day(self, day: date) -> None:
        if day != self._day:
            if self._day is not None and day < self._day:
                return  # a late key for yesterday reuses today's map rather than resetting it
            self._day = day
            self._salt = secrets.token_bytes(32)
            self._users = {}

    def user(self, day: date, user_id: str) -> bytes:
        """The stand-in for a user on `day`: random, remembered for the day."""
        self._for_day(day)
        token = self._users.get(user_id)
        if token is None:
            token = self._users[user_id] = secrets.token_bytes(16)
        return token

    def visitor(self, day: date, network: str) -> bytes:
        """The stand-in for a visitor's network on `day`: a hash with a daily in-memory key."""
        self._for_day(day)
        return keyed_hash(self._salt, VISITOR, network)


class KeyEncoder:
    """Turns a distinct key (a user ID or a cut address) into the bytes stored for its day.

    `hashed`: a keyed hash with the day's salt (shared by every process through the database);
    `memory`: a random stand-in held in this process; `database`: the text itself, or its SHA-256
    digest when longer than `MAX_KEY_BYTES` (see `bounded_key`), so that no ID is too long to index.
    """

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self._pseudonyms = MemoryPseudonyms()

    def __call__(self, day: date, kind: SeenKind, value: str, salt: bytes | None) -> bytes:
        if self.scheme == "hashed":
            if salt is None:
                raise ValueError("the hashed scheme needs the day's salt")
            return keyed_hash(salt, kind, value)
        if self.scheme == "memory":
            return self._pseudonyms.user(day, value) if kind == USER else self._pseudonyms.visitor(day, value)
        raw = value.encode("utf-8", "surrogatepass")
        return raw if len(raw) <= MAX_KEY_BYTES else bounded_key(raw)

    def encode_all(self, day: date, kind: SeenKind, values: Sequence[str], salt: bytes | None) -> list[bytes]:
        """`self(day, kind, value, salt)` for each of `values`, in one loop (the flush's hot part)."""
        if self.scheme == "hashed":
            if salt is None:
                raise ValueError("the hashed scheme needs the day's salt")
            return keyed_hashes(salt, kind, values)
        return [self(day, kind, value, salt) for value in values]
