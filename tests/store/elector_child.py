"""A leader in its own process, for the kill -9 / SIGSTOP tests.

``python -m tests.store.elector_child DB KEY TTL LOCK_DELAY NAME``: contends for KEY on the SQLite
file DB; once elected prints ``ELECTED <session>``, then writes one fenced key every 20 ms
(``log/<NAME>-<n>``, printing ``WROTE <n>``) with the fence it got when elected, never re-checking
leadership first, so after being frozen its very next write meets the fence: it prints
``REJECTED`` and exits.
"""

from __future__ import annotations

import queue
import sys
import time

from leoflow.store.election import LeaderElector
from leoflow.store.fence import Fence, NotLeader
from leoflow.store.port import Cas
from leoflow.store.sqlite import SqliteStore


def main(argv: list[str]) -> int:
    db, key, ttl, lock_delay, name = argv[0], argv[1], float(argv[2]), float(argv[3]), argv[4]
    store = SqliteStore(db, session_ttl_min=0.01)
    fences: queue.Queue[Fence] = queue.Queue()
    elector = LeaderElector(store, key, ttl=ttl, lock_delay=lock_delay, identity=name, on_elected=fences.put)
    elector.start()
    fence = fences.get(timeout=60)
    print(f"ELECTED {fence.session}", flush=True)
    n = 0
    while True:
        try:
            fence.txn(store, [Cas(f"log/{name}-{n}", b"x", 0)])
        except NotLeader:
            print("REJECTED", flush=True)
            return 0
        print(f"WROTE {n}", flush=True)
        n += 1
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
