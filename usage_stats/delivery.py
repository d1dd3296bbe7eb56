"""Exactly-once flushes: batch ids, and the one batch whose outcome is unknown (pure, no I/O).

Every flush sends its counts as a batch with an id (a random id of this process start and a sequence
number), which the writer records in the database's ledger in the same transaction. A failure before
`COMMIT` was sent is unambiguous: the counts go back to the counters for the next flush. A failure once
`COMMIT` was sent (the connection lost around it, a backend killed, a cancellation) leaves the outcome
unknown: the batch is then kept apart, never merged with newer counts, and sent again under the same id
before anything else. The ledger answers in that same transaction: the id is there (stored already,
nothing is written twice) or it is not (the batch is written now). Until an attempt gets an answer the
batch stays in doubt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .counters import Pending

__all__ = ["Attempt", "Batch", "Delivery", "FlushId", "Write"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlushId:
    """A flush's identity in the ledger: the process start and the batch's number in it."""

    process: uuid.UUID
    seq: int


@dataclass(frozen=True)
class Batch:
    """Counts taken for one flush, with their id."""

    id: FlushId
    pending: Pending


@dataclass
class Attempt:
    """How far one attempt to write a batch got; the writer sets the flags as it goes."""

    committing: bool = False  # COMMIT sent, or about to be: a failure from here leaves the outcome unknown
    committed: bool = False  # COMMIT answered
    already_stored: bool = False  # the ledger had the id: an earlier attempt committed


Write = Callable[[Batch, Attempt], Awaitable[None]]


class Delivery:
    """Hands batches to a writer so that each is stored exactly once."""

    def __init__(self) -> None:
        self.process = uuid.uuid4()
        self.in_doubt: Batch | None = None
        self._seq = 0

    async def settle(self, write: Write) -> None:
        """Send the batch in doubt, if any, under its own id; raises (and keeps it) if that fails."""
        batch = self.in_doubt
        if batch is None:
            return
        attempt = Attempt()
        try:
            await write(batch, attempt)
        except BaseException:
            if attempt.committed:
                self.in_doubt = None
            raise
        self.in_doubt = None
        if attempt.already_stored:
            logger.info("usage_stats: a flush whose outcome was unknown had been stored; it was not sent again")
        else:
            logger.info("usage_stats: a flush whose outcome was unknown had not been stored; it is stored now")

    async def send(self, pending: Pending, write: Write, restore: Callable[[Pending], None]) -> None:
        """Write `pending` as a new batch; on failure give it back with `restore`, or keep it in doubt."""
        self._seq += 1
        batch = Batch(FlushId(self.process, self._seq), pending)
        attempt = Attempt()
        try:
            await write(batch, attempt)
        except BaseException:
            if attempt.committed:
                pass  # stored; the failure came after (releasing the connection)
            elif attempt.committing:
                self.in_doubt = batch
                logger.warning(
                    "usage_stats: a flush failed while committing, so whether it was stored is unknown; its %d counts "
                    "and %d distinct keys are kept apart until the database says",
                    pending.total_counts,
                    pending.total_keys,
                )
            else:
                restore(pending)
            raise
