"""The exactly-once state machine, without a database: what happens to a batch on each kind of failure."""

from __future__ import annotations

import pytest

from usage_stats.counters import Pending
from usage_stats.delivery import Attempt, Batch, Delivery, FlushId


class ConnectionLost(Exception):
    pass


class Store:
    """A fake writer with a ledger; `fail` says where the next attempt fails."""

    def __init__(self) -> None:
        self.ledger: set[FlushId] = set()
        self.total = 0
        self.fail: str | None = None
        self.attempts: list[FlushId] = []

    async def write(self, batch: Batch, attempt: Attempt) -> None:
        self.attempts.append(batch.id)
        fail, self.fail = self.fail, None
        if fail == "before":
            raise ConnectionLost("before COMMIT")
        if batch.id in self.ledger:
            attempt.committing = attempt.already_stored = True
        else:
            attempt.committing = True
            if fail == "commit_lost":  # not committed
                raise ConnectionLost("while committing")
            self.ledger.add(batch.id)
            self.total += batch.pending.total_counts
            if fail == "reply_lost":  # committed
                raise ConnectionLost("after COMMIT")
        attempt.committed = True


def counts(n: int) -> Pending:
    return Pending(counts={0: {("c", "e"): n}})


async def test_a_failure_before_commit_gives_the_counts_back() -> None:
    store, delivery, restored = Store(), Delivery(), list[Pending]()
    store.fail = "before"
    with pytest.raises(ConnectionLost):
        await delivery.send(counts(5), store.write, restored.append)
    assert [p.total_counts for p in restored] == [5]
    assert delivery.in_doubt is None


@pytest.mark.parametrize(("fail", "stored_first"), [("reply_lost", 5), ("commit_lost", 0)])
async def test_a_batch_in_doubt_is_resent_under_its_id_before_anything_else(fail: str, stored_first: int) -> None:
    store, delivery, restored = Store(), Delivery(), list[Pending]()
    store.fail = fail
    with pytest.raises(ConnectionLost):
        await delivery.send(counts(5), store.write, restored.append)
    assert restored == []  # never merged with newer counts
    assert delivery.in_doubt is not None
    assert store.total == stored_first
    doubtful = delivery.in_doubt.id
    store.fail = "before"  # an attempt that gets no answer leaves it in doubt
    with pytest.raises(ConnectionLost):
        await delivery.settle(store.write)
    assert delivery.in_doubt is not None
    assert delivery.in_doubt.id == doubtful
    await delivery.settle(store.write)
    assert delivery.in_doubt is None
    assert store.total == 5
    await delivery.send(counts(3), store.write, restored.append)
    assert store.total == 8
    assert store.attempts == [doubtful, doubtful, doubtful, FlushId(delivery.process, 2)]


async def test_each_start_has_its_own_process_id() -> None:
    assert Delivery().process != Delivery().process
