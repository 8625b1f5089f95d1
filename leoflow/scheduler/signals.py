"""The two store keys other processes use to talk to the scheduler: its leader lock and its nudge.

The API server asks "is a scheduler alive?" by reading the leader lock (a held lock proves a live
session; no heartbeat write is needed), and wakes the scheduler after a change it must react to
that touches no run record (a task instance marked or cleared inside a running run) by writing
the nudge key, which the scheduler watches with a blocking query.
"""

from __future__ import annotations

import os
import time

from leoflow.store import keys
from leoflow.store.port import Store


def leader_key(root: str = "leoflow") -> str:
    return keys.join(root, "scheduler", "leader")


def nudge_key(root: str = "leoflow") -> str:
    return keys.join(root, "scheduler", "nudge")


def nudge(store: Store, root: str = "leoflow") -> None:
    """Wake the scheduler soon; the value changes on every call so the write always moves the index."""
    store.put(nudge_key(root), f"{time.time_ns()}:{os.getpid()}".encode())
