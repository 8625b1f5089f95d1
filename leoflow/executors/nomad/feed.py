"""Where allocation changes come from: Nomad's event stream, or blocking queries as the fallback.

One connection watches every Leoflow job (no request per running try): the ``Allocation`` and
``Job`` topics of the namespace, filtered to job ids with Leoflow's prefix. The stream sends a
``{}`` heartbeat every 30 s, so the read timeout is longer than that; when it breaks, the feed
reconnects from the last index it saw and drops events at or below it (Nomad replays from the
requested index). If the stream is refused (events disabled, or an ACL token without access to
it), the feed long-polls ``/v1/allocations`` with ``index``/``wait`` instead: still one request
per change in the namespace, never one per task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from leoflow.executors.nomad.client import NomadClient, NomadError

log = logging.getLogger("leoflow.executors.nomad")

OnAlloc = Callable[[Mapping[str, Any]], None]
OnJob = Callable[[str, Mapping[str, Any]], None]


class AllocationFeed:
    def __init__(self, client: NomadClient, prefix: str, *, on_alloc: OnAlloc, on_job: OnJob,
                 stop: threading.Event, start_index: int = 0, read_timeout: float = 45.0,
                 on_reconnect: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.on_alloc = on_alloc
        self.on_job = on_job
        self.stop = stop
        self.index = start_index
        self.read_timeout = read_timeout
        self.on_reconnect = on_reconnect
        self.mode = "events"
        self.connected = threading.Event()

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                if self.mode == "events":
                    self._stream()
                else:
                    self._poll()
                failures = 0
            except NomadError as exc:
                self.connected.clear()
                if self.stop.is_set():
                    return
                if self.mode == "events" and exc.status in (400, 403, 404, 501):
                    log.warning("Nomad event stream refused; falling back to blocking queries",
                                extra={"error": str(exc)})
                    self.mode = "blocking"
                    continue
                failures += 1
                if self.on_reconnect is not None:
                    self.on_reconnect(self.mode)
                log.warning("Nomad watch broke; reconnecting", extra={"error": str(exc), "index": self.index})
                self.stop.wait(min(0.1 * 2**failures, 5.0))

    def _stream(self) -> None:
        for message in self.client.event_stream(self.index, ["Allocation", "Job"], read_timeout=self.read_timeout):
            self.connected.set()
            if self.stop.is_set():
                return
            index = int(message.get("Index") or 0)
            if not message or index <= self.index:
                continue  # a heartbeat, or a replay of what was already handled
            for event in message.get("Events") or ():
                self._dispatch(event)
            self.index = max(self.index, index)
        # The server closed a healthy stream: reconnect from the last index.
        if self.on_reconnect is not None and not self.stop.is_set():
            self.on_reconnect(self.mode)

    def _dispatch(self, event: Mapping[str, Any]) -> None:
        payload = event.get("Payload") or {}
        topic = event.get("Topic")
        if topic == "Allocation":
            alloc = payload.get("Allocation") or {}
            if str(alloc.get("JobID", "")).startswith(self.prefix):
                self.on_alloc(alloc)
        elif topic == "Job":
            job = payload.get("Job") or {}
            job_id = str(job.get("ID") or event.get("Key") or "")
            if job_id.startswith(self.prefix):
                self.on_job(str(event.get("Type", "")), job)

    def _poll(self) -> None:
        allocs, index = self.client.allocations(index=max(self.index, 1))
        self.connected.set()
        if index < self.index:
            self.index = 0  # the index went backwards (a snapshot restore): start over
            return
        if index == self.index:
            return  # the wait ended without a change
        self.index = index
        for alloc in allocs:
            if str(alloc.get("JobID", "")).startswith(self.prefix):
                self.on_alloc(alloc)
