"""Fencing: a leader-only write is ONE transaction that starts with ``CheckSession(lock_key, session)``.

Why: a leader can be deposed at any moment (a GC pause, SIGSTOP, a partition) and learn it only
later. Checking "am I leader?" and then writing is a race; putting the check *inside* the write
transaction is not: the store applies the check and the writes atomically, so once the session
has lost the lock nothing the old leader sends can land (Consul answers 409, SQLite rolls back).

How other code uses it (the scheduler holds a ``Fence`` from ``election.LeaderElector`` and passes
it to repositories; repositories build their write batches with it)::

    fence = elector.fence()                 # raises NotLeader if not currently leading
    result = fence.txn(store, [Cas(k, v, idx), Set(k2, v2)])   # at most Fence.CAPACITY ops
    if not result.ok:                        # a CAS of *yours* failed (op_index refers to your list)
        ...
    # or, to compose with other checks yourself:
    store.txn(fence.wrap(ops))              # [CheckSession(...), *ops]; op_index 0 is the fence

``Fence.txn`` raises ``NotLeader`` when the fence check fails, whatever else failed, because then
the caller's view of the world is stale and it must stop acting as leader at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leoflow.store.port import MAX_TXN_OPS, CheckSession, Op, Store, StoreError, TxnError, TxnResult


class NotLeader(StoreError):
    """This process does not (or no longer) hold the leader lock; its write was not applied."""


@dataclass(frozen=True)
class Fence:
    """Proof of leadership at a point in time: the lock key and the session that held it."""

    key: str
    session: str

    # The fence check takes one of the transaction's operation slots.
    CAPACITY = MAX_TXN_OPS - 1

    def wrap(self, ops: Sequence[Op]) -> list[Op]:
        """``ops`` preceded by the fence check, ready for ``Store.txn``."""
        if len(ops) > self.CAPACITY:
            # Splitting would break atomicity; the caller must decide how to batch.
            from leoflow.store.port import TooManyOperations

            raise TooManyOperations(
                f"fenced transaction has {len(ops)} operations, over the limit of {self.CAPACITY} (64 minus the fence)"
            )
        return [CheckSession(self.key, self.session), *ops]

    def txn(self, store: Store, ops: Sequence[Op]) -> TxnResult:
        """Apply ``ops`` atomically iff this fence still holds; errors index into ``ops``, not the wrapper."""
        result = store.txn(self.wrap(ops))
        if result.ok:
            return result
        if any(error.op_index == 0 for error in result.errors):
            raise NotLeader(f"leader lock {self.key!r} is no longer held by session {self.session}: write rejected")
        shifted = tuple(TxnError(error.op_index - 1, error.what) for error in result.errors)
        return TxnResult(ok=False, results=(), errors=shifted, index=result.index)


def fenced(fence: Fence, ops: Sequence[Op]) -> list[Op]:
    """Functional spelling of ``Fence.wrap`` for code that builds op lists."""
    return fence.wrap(ops)
