"""The ``nomad`` executor: a batch job per try, watched through one event stream.

Life of a try (adr/0080-0084):

1. ``submit`` registers the job create-only (``EnforceIndex``, modify index 0). "Already
   registered" means a previous leader submitted it: not an error, and its allocation is read
   once so a try that already ended is still reported.
2. The allocation feed (one event stream for all Leoflow jobs; blocking queries when events are
   unavailable) reports allocation changes. ``running`` -> STARTED; a terminal allocation is
   mapped by ``status.verdict`` (success, exit code, OOM, driver failure, lost, cancelled).
3. Logs are copied while it runs. When it ends: wait for the log copy, read the XCom return
   file from the alloc dir, *then* emit the terminal event.
4. The event is acknowledged by the scheduler's next ``events()`` call (the loop writes a batch
   before it asks for more); only then is the job purged. Until then Nomad itself is the durable
   outbox: a scheduler that dies in between finds the job again (``start`` adopts every Leoflow
   job) and reports it again; the scheduler drops the duplicate by try number and state.

No request is made per running try: timeouts (``execution_timeout``) and the placement wait are
local timers; the only per-try calls are register, the XCom read and the purge.

Secrets: the task gets its declared connections/variables from Nomad's Vault template (adr/0082).
Before registering, ``submit`` checks that Vault holds every declared id (the delivery's lookup:
Vault first, the store as fallback); one held only in the store, or nowhere, or any declared id
when the scheduler has no Vault, fails the try without a job, naming it; Vault unreachable holds
the try queued for the agents path's grace, then fails it (adr/0099). The same lookup masks the
values in the lines the executor copies. The ids travel in the job's meta, so an executor that
adopts the job after a failover masks exactly what the first one did (adr/0097).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leoflow.config import Config
from leoflow.executors.nomad.client import NomadClient, NomadError, Settings
from leoflow.executors.nomad.feed import AllocationFeed
from leoflow.executors.nomad.jobspec import (
    XCOM_FS_PATH,
    Declared,
    JobSettings,
    JobSpecError,
    build_job,
    declared_from_job,
    declared_from_meta,
    job_id_for,
    job_prefix_of,
    register_body,
    try_key_from_meta,
)
from leoflow.executors.nomad.logs import LogCopier, note_record
from leoflow.executors.nomad.metrics import NomadMetrics
from leoflow.executors.nomad.preflight import undeliverable
from leoflow.executors.nomad.status import Verdict, placement_reason, verdict
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.logs.store import LogStore
from leoflow.secrets.backend import SecretsUnavailable
from leoflow.secrets.delivery import TaskSecrets, task_secrets
from leoflow.secrets.masking import Masker
from leoflow.secrets.vault import VaultError

log = logging.getLogger("leoflow.executors.nomad")

# Seconds after Vault failed to answer the secrets check during which other submits are held
# with the same error without asking again (one Vault timeout per interval, not one per try).
VAULT_PROBE_INTERVAL = 2.0


@dataclass(frozen=True)
class ReconcileResult:
    """``stopped``: job ids of Leoflow jobs that had no live try; ``missing``: live tries with no job."""

    stopped: list[str]
    missing: list[TryKey]


@dataclass
class _Try:
    key: TryKey
    job_id: str
    submitted: float  # monotonic
    timeout: float | None = None
    memory_mb: int | None = None
    alloc_id: str | None = None
    alloc_index: int = -1
    started: bool = False
    kill_at: float | None = None
    stop_reason: str | None = None
    finishing: bool = False
    orphan: bool = False
    copier: LogCopier | None = None
    connections: tuple[str, ...] = ()  # declared ids only: what the log is masked for
    variables: tuple[str, ...] = ()


class NomadExecutor:
    name = "nomad"

    def __init__(self, client: NomadClient, logs: LogStore, jobs: JobSettings, *, placement_timeout: float = 300.0,
                 log_drain_timeout: float = 10.0, read_timeout: float = 45.0, resync_interval: float = 60.0,
                 metrics: NomadMetrics | None = None, secrets: TaskSecrets | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        # None: no masking (only tests that declare no secrets build it so; from_config always sets it).
        self.secrets = secrets
        self.logs = logs
        self.jobs = jobs
        self.prefix = job_prefix_of(jobs.job_prefix)
        self.placement_timeout = placement_timeout
        self.log_drain_timeout = log_drain_timeout
        self.read_timeout = read_timeout
        self.resync_interval = resync_interval
        self.metrics = metrics or NomadMetrics()
        self._clock = clock
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tries: dict[str, _Try] = {}
        self._requested: set[TryKey] = set()
        self._refused: set[TryKey] = set()  # failed in submit, no job registered: never submitted again
        # (until when, error): Vault last failed to answer the secrets check; submits meanwhile hold
        # their try with that error instead of waiting on Vault's timeout each.
        self._vault_outage: tuple[float, str] | None = None
        self._events: list[TryEvent] = []
        self._unacked: list[str] = []  # job ids whose terminal event was handed out, not yet acknowledged
        self._stop = threading.Event()
        self._started = False
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nomad-finish")
        self.feed: AllocationFeed | None = None

    @classmethod
    def from_config(cls, cfg: Config, store: Any = None) -> NomadExecutor:
        """The scheduler's factory entry (``leoflow/cli/scheduler.py``); ``store`` is the fallback the
        secrets masking reads connections/variables from (after Vault, as delivery does)."""
        n, v = cfg.nomad, cfg.vault
        meta = {}
        for pair in filter(None, (p.strip() for p in n.meta.split(","))):
            k, sep, val = pair.partition("=")
            if not sep or not k.strip():
                raise NomadError(f"config key nomad.meta: expected key=value pairs, got {pair!r}")
            meta[k.strip()] = val.strip()
        jobs = JobSettings(
            namespace=n.namespace or "default", region=n.region,
            datacenters=tuple(d.strip() for d in n.datacenters.split(",") if d.strip()) or ("*",),
            node_pool=n.node_pool, node_class=n.node_class, meta=meta, job_prefix=n.job_prefix, priority=n.priority,
            kill_timeout_s=n.kill_timeout, log_max_files=n.log_max_files, log_max_file_size_mb=n.log_max_file_size_mb,
            vault_role=n.vault_role, kv_mount=v.kv_mount, connections_path=v.connections_path,
            variables_path=v.variables_path,
        )
        secrets = None
        if store is not None:
            try:
                secrets = task_secrets(cfg, store)
            except VaultError as exc:
                raise NomadError(f"the Nomad executor cannot set up Vault to mask task logs: {exc}") from exc
        client = NomadClient(Settings.from_config(n))
        return cls(client, LogStore(cfg.home_path / "logs"), jobs, placement_timeout=n.placement_timeout,
                   log_drain_timeout=n.log_drain_timeout, resync_interval=n.resync_interval, secrets=secrets)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> NomadExecutor:
        """Adopt every Leoflow job Nomad holds, then watch. Idempotent; called lazily.

        Lazily, because a standby scheduler builds an executor too and must not copy logs or
        report anything until it leads (the scheduler only calls us then).
        """
        with self._lock:
            if self._started:
                return self
            index = self._adopt()
            self._started = True
        self.feed = AllocationFeed(self.client, self.prefix, on_alloc=self._on_alloc, on_job=self._on_job,
                                   stop=self._stop, start_index=index, read_timeout=self.read_timeout,
                                   on_reconnect=lambda mode: self.metrics.reconnects.labels(mode=mode).inc())
        for name, target in (("nomad-feed", self.feed.run), ("nomad-timers", self._timers)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self.client.close()  # ends the open streams, so the feed and log threads wake now
        for thread in self._threads:
            thread.join(timeout=self.read_timeout + 5)
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _adopt(self) -> int:
        """Track every Leoflow job Nomad has, and feed its current allocations; returns the index."""
        jobs, _ = self.client.jobs(self.prefix)
        now = self._clock()
        for job in jobs:
            job_id = str(job.get("ID", ""))
            meta = job.get("Meta")
            if meta is None:
                full = self.client.job(job_id)
                meta = (full or {}).get("Meta")
            key = try_key_from_meta(meta)
            if key is None or job_id in self._tries:
                continue
            timeout = (meta or {}).get("leoflow_timeout")
            conns, variables = self._declared(job_id, meta)
            t = _Try(key, job_id, now, timeout=float(timeout) if timeout else None, connections=conns,
                     variables=variables)
            if job.get("Stop") and job.get("Status") != "dead":
                t.stop_reason = "cancelled"
            self._tries[job_id] = t
        allocs, index = self.client.allocations()
        for alloc in sorted(allocs, key=lambda a: a.get("CreateIndex", 0)):
            if str(alloc.get("JobID", "")).startswith(self.prefix):
                self._on_alloc(alloc)
        # A job with no allocation at all (never placed) gets a full placement wait from now.
        return index

    def _declared(self, job_id: str, meta: Mapping[str, str] | None) -> Declared:
        """The declared ids of a job found in Nomad (adopted): its meta, or for a job registered
        before they were recorded there, the paths its secrets template reads (one job read)."""
        found = declared_from_meta(meta)
        if found is not None:
            return found
        return declared_from_job(self.client.job(job_id))

    # -- the port -----------------------------------------------------------------------------
    def submit(self, request: TryRequest) -> None:
        self.start()
        begun = time.perf_counter()
        key = request.key
        job_id = job_id_for(key, self.jobs.job_prefix)
        with self._lock:
            self._requested.add(key)
            if job_id in self._tries or key in self._refused:
                return  # submitted (or adopted, or failed before registering) by this process already
        try:
            job = build_job(request, self.jobs)
        except JobSpecError as exc:
            self._reject(key, job_id, str(exc))
            return
        if not self._secrets_deliverable(request, job_id):
            return
        t = _Try(key, job_id, self._clock(), timeout=request.timeout_seconds, memory_mb=request.resources.memory,
                 connections=tuple(request.connections), variables=tuple(request.variables))
        with self._lock:
            self._tries[job_id] = t  # before registering: the feed may report the alloc at once
        try:
            created, _resp = self.client.register(register_body(job))
        except NomadError as exc:
            if exc.status is not None and (exc.status == 400 or (exc.status == 500 and "error occurred" in str(exc))):
                with self._lock:
                    self._tries.pop(job_id, None)
                self._reject(key, job_id, f"Nomad refused the job: {exc}")
                return
            with self._lock:
                self._tries.pop(job_id, None)
            raise  # infrastructure: the scheduler retries the submit without spending a try
        self.metrics.submits.labels(result="created" if created else "existing").inc()
        self.metrics.submit_seconds.observe(time.perf_counter() - begun)
        note = (f"submitted to Nomad as job {job_id}" if created else
                f"Nomad job {job_id} already registered (resubmitted after a failover)")
        self._pool.submit(self.logs.append, key, [note_record(note)])  # off the scheduler's wake-up path
        if not created:
            # A previous leader registered it; it may even have ended already. One read settles it.
            for alloc in self._job_allocations(job_id):
                self._on_alloc(alloc)

    def _secrets_deliverable(self, request: TryRequest, job_id: str) -> bool:
        """Whether Nomad's Vault template can give the try every secret it declares (adr/0099).

        No: the try fails now, before any job exists, with the reason (``_reject``). Vault cannot
        answer: the try is held back as the agents path holds it (``TaskSecrets.waited`` and
        ``unavailable_grace``, shared with delivery): ``submit`` raises, the scheduler keeps the try
        queued and submits again with backoff without spending a try; past the grace it fails.
        """
        key = request.key
        try:
            with self._lock:
                outage = self._vault_outage
            if outage is not None and (request.connections or request.variables) and self._clock() < outage[0]:
                # Vault just failed to answer: do not stall the scheduler's loop on one Vault
                # timeout per try; hold this one with the same error until the next probe.
                raise SecretsUnavailable(outage[1])
            reason = undeliverable(self.secrets, request.connections, request.variables)
        except SecretsUnavailable as exc:
            assert self.secrets is not None  # undeliverable asks Vault only through it
            with self._lock:
                if outage is None or self._clock() >= outage[0]:
                    self._vault_outage = (self._clock() + VAULT_PROBE_INTERVAL, str(exc))
            waited = self.secrets.waited(key)
            if waited >= self.secrets.unavailable_grace:
                self.secrets.settled(key)
                reason = f"declared secrets could not be checked in Vault for {waited:.0f}s: {exc}"
                self._reject(key, job_id, reason, refused="secrets_refused")
                return False
            self.metrics.submits.labels(result="secrets_pending").inc()
            if waited == 0:
                note = (f"waiting for Vault to check the declared secrets (up to {self.secrets.unavailable_grace:g}s); "
                        f"no job is registered meanwhile: {exc}")
                self.logs.append(key, [note_record(note, "warning")])
            raise SecretsUnavailable(f"the try waits for Vault ({waited:.0f}s of "
                                     f"{self.secrets.unavailable_grace:g}s): {exc}") from exc
        if self.secrets is not None and (request.connections or request.variables):
            self.secrets.settled(key)
            with self._lock:
                self._vault_outage = None  # Vault answered
        if reason is None:
            return True
        self._reject(key, job_id, reason, refused="secrets_refused")
        return False

    def _job_allocations(self, job_id: str) -> list[Mapping[str, Any]]:
        return self.client.job_allocations(job_id)

    def _reject(self, key: TryKey, job_id: str, reason: str, refused: str = "rejected") -> None:
        """The try fails without a job; a later submit of the same try is a no-op (one terminal event)."""
        with self._lock:
            self._refused.add(key)
        self.metrics.submits.labels(result=refused).inc()
        self.logs.append(key, [note_record(f"cannot run on Nomad: {reason}", "error")])
        self._emit(TryEvent(key, TryOutcome.FAILED, datetime.now(UTC), reason=reason, executor_ref=job_id))
        self.metrics.finished.labels(outcome="failed").inc()

    def cancel(self, key: TryKey, reason: str) -> None:
        self.start()
        job_id = job_id_for(key, self.jobs.job_prefix)
        with self._lock:
            t = self._tries.get(job_id)
            if t is not None and t.stop_reason is None:
                t.stop_reason = f"cancelled: {reason}"
        try:
            self.client.deregister(job_id)
        except NomadError as exc:
            log.warning("stopping a Nomad job failed", extra={"job": job_id, "error": str(exc)})
            raise
        if t is not None:
            with self._lock:
                never_placed = t.alloc_id is None and not t.finishing
                if never_placed:
                    t.finishing = True
            if never_placed:
                self._pool.submit(self._finish, t, Verdict(TryOutcome.FAILED, None, t.stop_reason))

    def events(self, timeout: float) -> Iterator[TryEvent]:
        self.start()
        with self._cond:
            acked, self._unacked = self._unacked, []
            if not self._events:
                self._cond.wait_for(lambda: bool(self._events) or self._stop.is_set(), max(0.0, timeout))
            out, self._events = self._events, []
            self._unacked = [job_id_for(e.key, self.jobs.job_prefix) for e in out if e.terminal]
        for job_id in acked:
            self._pool.submit(self._purge, job_id)
        return iter(out)

    def reconcile(self, live_tries: Iterable[TryKey]) -> ReconcileResult:
        """On election: stop Leoflow jobs no live try owns; report live tries that have no job.

        A live try without a job that this executor was never asked to submit (its job was
        purged or collected while no leader watched) gets a LOST event: an infrastructure loss,
        retried without spending a retry. Nothing is submitted here, so nothing runs twice.
        """
        self.start()
        live = set(live_tries)
        jobs, _ = self.client.jobs(self.prefix)
        present: set[str] = set()
        stopped: list[str] = []
        for job in jobs:
            job_id = str(job.get("ID", ""))
            present.add(job_id)
            meta = job.get("Meta") or (self.client.job(job_id) or {}).get("Meta")
            key = try_key_from_meta(meta)
            if key is None or key in live:
                continue
            with self._lock:
                known = job_id in self._tries
            declared = ((), ()) if known else self._declared(job_id, meta)
            with self._lock:
                t = self._tries.get(job_id)
                untracked = t is None
                if t is None:
                    t = self._tries[job_id] = _Try(key, job_id, self._clock(), connections=declared[0],
                                                   variables=declared[1])
                t.orphan = True
                if t.stop_reason is None:
                    t.stop_reason = "cancelled: no live try owns this job (reconciled on election)"
                nothing_to_copy = untracked or (t.alloc_id is None and not t.finishing)
            if job.get("Status") == "dead":
                # With an allocation, the finisher copies its logs and then purges (it sees orphan).
                if nothing_to_copy:
                    self._pool.submit(self._purge, job_id)
                continue
            self.client.deregister(job_id)
            stopped.append(job_id)
            log.info("stopped a Nomad job with no live try", extra={"job": job_id})
        missing = []
        for key in sorted(live):
            job_id = job_id_for(key, self.jobs.job_prefix)
            with self._lock:
                if job_id in present or key in self._requested or job_id in self._tries:
                    continue
            missing.append(key)
            reason = f"Nomad job {job_id} not found when the scheduler took over (purged or garbage-collected)"
            self.logs.append(key, [note_record(reason, "warning")])
            self._emit(TryEvent(key, TryOutcome.LOST, datetime.now(UTC), reason=reason, executor_ref=job_id))
            self.metrics.finished.labels(outcome="lost").inc()
        return ReconcileResult(stopped, missing)

    # -- feed callbacks -----------------------------------------------------------------------
    def _on_alloc(self, alloc: Mapping[str, Any]) -> None:
        job_id = str(alloc.get("JobID", ""))
        with self._lock:
            t = self._tries.get(job_id)
            if t is None:
                return
            alloc_id = str(alloc.get("ID", ""))
            index = int(alloc.get("ModifyIndex") or alloc.get("AllocModifyIndex") or 0)
            if t.alloc_id not in (None, alloc_id) or index <= t.alloc_index or t.finishing:
                return
            t.alloc_id, t.alloc_index = alloc_id, index
            v = verdict(alloc, memory_mb=t.memory_mb, stopped_by_us=t.stop_reason is not None)
            client = alloc.get("ClientStatus")
            if t.copier is None and (client == "running" or client in ("complete", "failed")):
                t.copier = LogCopier(self.client, self.logs, t.key, alloc_id, stop=self._stop,
                                     on_lines=self.metrics.log_lines.inc, masker=self._masker_source(t)).start()
            if v.outcome is TryOutcome.STARTED and not t.started:
                t.started = True
                if t.timeout:
                    t.kill_at = self._clock() + t.timeout
                self._cond.notify_all()
                if not t.orphan:
                    self._emit(TryEvent(t.key, TryOutcome.STARTED, datetime.now(UTC), hostname=v.node,
                                        executor_ref=job_id))
                note = f"allocation {alloc_id[:8]} running on node {v.node or '?'}"
                self._pool.submit(self.logs.append, t.key, [note_record(note)])
            elif v.outcome is not None and v.outcome is not TryOutcome.STARTED:
                t.finishing = True
                self._pool.submit(self._finish, t, v)

    def _on_job(self, kind: str, job: Mapping[str, Any]) -> None:
        """A Leoflow job deregistered by someone else before any allocation: the try cannot run."""
        if kind not in ("JobDeregistered", "JobBatchDeregistered"):
            return
        job_id = str(job.get("ID", ""))
        with self._lock:
            t = self._tries.get(job_id)
            if t is None or t.alloc_id is not None or t.finishing or t.stop_reason is not None:
                return
            t.finishing = True
        self._pool.submit(self._finish, t, Verdict(TryOutcome.FAILED, None,
                                                   "the Nomad job was stopped outside Leoflow before it was placed"))

    # -- masking ------------------------------------------------------------------------------
    def _masker_source(self, t: _Try) -> Callable[[], Masker] | None:
        """What the log copier calls for the try's mask set; None when there is nothing to mask."""
        secrets = self.secrets
        if secrets is None or not (t.connections or t.variables):
            return None

        def build() -> Masker:
            masker, missing = secrets.declared_masker(t.key, t.connections, t.variables)
            if missing:
                self.logs.append(t.key, [note_record(f"{text}; its value cannot be masked in this log", "warning")
                                         for text in missing])
            return masker

        return build

    def _masked(self, t: _Try, text: str) -> str:
        """The executor's own lines (outcome reasons come from Nomad) through the try's mask set,
        when it is known; never waits for Vault."""
        masker = self.secrets.cached(t.key) if self.secrets is not None else None
        return masker.mask(text) if masker is not None else text

    # -- ending a try -------------------------------------------------------------------------
    def _finish(self, t: _Try, v: Verdict) -> None:
        try:
            if t.copier is not None and not t.copier.wait(self.log_drain_timeout):
                log.warning("log copy still running when the try ended; reporting anyway", extra={"job": t.job_id})
            outcome, reason, xcom = v.outcome, v.reason, None
            if t.stop_reason is not None and outcome is not TryOutcome.LOST:
                outcome, reason = TryOutcome.FAILED, t.stop_reason
            if outcome is TryOutcome.SUCCESS and t.alloc_id is not None:
                try:
                    data = self.client.cat(t.alloc_id, XCOM_FS_PATH)
                except NomadError as exc:
                    data = None
                    outcome, reason = TryOutcome.FAILED, f"cannot read the XCom return file from Nomad: {exc}"
                if data is not None:
                    xcom = data.decode("utf-8", "replace")
            assert outcome is not None
            text = f"try ended: {outcome.value}" + (f" ({reason})" if reason else "")
            level = "info" if outcome is TryOutcome.SUCCESS else "error"
            self.logs.append(t.key, [note_record(self._masked(t, text), level)])
            if t.orphan:
                self._purge(t.job_id)
                return
            self.metrics.finished.labels(outcome=outcome.value).inc()
            self._emit(TryEvent(t.key, outcome, datetime.now(UTC), exit_code=v.exit_code, reason=reason,
                                hostname=v.node, executor_ref=t.job_id, xcom_return=xcom))
        except Exception:  # a finisher must never vanish silently: the try would hang
            log.exception("finishing a Nomad try failed", extra={"job": t.job_id})
            self._emit(TryEvent(t.key, TryOutcome.LOST, datetime.now(UTC), reason="the executor failed to "
                                "collect the outcome from Nomad", executor_ref=t.job_id))

    def _purge(self, job_id: str) -> None:
        """Remove the job from Nomad: its outcome is recorded and its logs are in the log store."""
        for attempt in range(5):
            try:
                self.client.deregister(job_id, purge=True)
                break
            except NomadError as exc:
                if self._stop.wait(min(0.2 * 2**attempt, 5.0)):
                    return
                log.warning("purging a Nomad job failed; retrying", extra={"job": job_id, "error": str(exc)})
        with self._lock:
            t = self._tries.pop(job_id, None)
        if t is not None and self.secrets is not None:
            self.secrets.forget(t.key)

    def _emit(self, event: TryEvent) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    # -- local timers (no request per running try) ---------------------------------------------
    def _timers(self) -> None:
        next_resync = self._clock() + self.resync_interval
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_resync:
                next_resync = now + self.resync_interval
                self._resync()
            due: list[tuple[_Try, str]] = []
            with self._cond:
                nearest = min(now + 1.0, next_resync)
                for t in self._tries.values():
                    if t.finishing or t.orphan:
                        continue
                    if t.kill_at is not None and t.stop_reason is None:
                        if t.kill_at <= now:
                            t.stop_reason = f"execution_timeout: killed after {t.timeout:g}s"
                            due.append((t, "timeout"))
                        else:
                            nearest = min(nearest, t.kill_at)
                    if not t.started and t.alloc_id is None and t.stop_reason is None:
                        at = t.submitted + self.placement_timeout
                        if at <= now:
                            due.append((t, "placement"))
                        else:
                            nearest = min(nearest, at)
                if not due:
                    self._cond.wait(max(0.01, nearest - now))
            for t, why in due:
                try:
                    if why == "timeout":
                        self.client.deregister(t.job_id)
                    else:
                        self._placement_failed(t)
                except NomadError as exc:
                    log.warning("acting on a Nomad try timer failed; retrying", extra={"job": t.job_id,
                                                                                       "error": str(exc)})
                    with self._lock:
                        if why == "timeout":
                            t.stop_reason = None
                    self._stop.wait(0.5)

    def _resync(self) -> None:
        """The safety net for events Nomad dropped (its event buffer holds 100): one namespace-wide
        read of allocations every ``resync_interval`` while tries are in flight; never one per try."""
        with self._lock:
            if not any(not t.finishing for t in self._tries.values()):
                return
        try:
            allocs, _ = self.client.allocations()
        except NomadError as exc:
            log.warning("allocation resync failed", extra={"error": str(exc)})
            return
        self.metrics.resyncs.inc()
        for alloc in sorted(allocs, key=lambda a: a.get("CreateIndex", 0)):
            if str(alloc.get("JobID", "")).startswith(self.prefix):
                self._on_alloc(alloc)

    def _placement_failed(self, t: _Try) -> None:
        detail = placement_reason(self.client.evaluations(t.job_id))
        with self._lock:
            if t.alloc_id is not None or t.finishing:
                return  # placed meanwhile
            reason = (f"placement failed: Nomad found no node for the task within {self.placement_timeout:g}s"
                      + (f" ({detail})" if detail else ""))
            t.stop_reason = reason
        self.client.deregister(t.job_id)
        with self._lock:
            if t.alloc_id is not None or t.finishing:
                return
            t.finishing = True
        self._finish(t, Verdict(TryOutcome.FAILED, None, reason))

    # -- introspection for tests and the benchmark --------------------------------------------
    def tracked(self) -> dict[str, TryKey]:
        with self._lock:
            return {job_id: t.key for job_id, t in self._tries.items()}


__all__ = ["NomadExecutor", "ReconcileResult"]
