"""A fake Nomad agent speaking the real HTTP API on 127.0.0.1, running tasks as real processes.

Semantics follow research/hashicorp.md §2.6/§5.3 (read from Nomad's ``job_endpoint.go``,
``fs_endpoint.go``, ``event_endpoint.go``, ``structs.go``): one raft-like index shared by all
tables, table-wide indexes for blocking queries (``X-Nomad-Index``), plain-text error bodies
(500 for validation failures, ``Enforcing job modify index 0: job already exists``), ``[]`` for the
allocations of an unknown job, 200 for deregistering an unknown job, Go ``ParseBool`` for flags,
the NDJSON event stream (``Allocation``/``Job``/``Evaluation`` topics, ``Topic:key`` filters on
``Key``/``FilterKeys``, an index replay buffer, ``{}`` heartbeats), and client fs logs (framed
base64 JSON or plain, ``follow``, offsets spanning rotated ``<task>.<type>.<n>`` files), ls,
readat and cat.

Tasks run for real: ``raw_exec``/``exec`` tasks as local processes (argv, no shell), and docker
tasks through ``docker_map`` (image, command, args -> argv; default: command + args locally).
Tests script allocations by job-id or image pattern: ``fake.script("lf-*", Pending(0.1),
Running(0.2, stdout=b"hi\\n"), Exit(3))``, ``OOM()``, ``DriverFailure("...")``, ``Lost()``, or
make placement fail for real (a memory request above the node's, a constraint no node meets).
``lose(job_id)`` loses a running allocation (its process is killed, the alloc becomes ``lost``).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.http import FakeHandler, start_server

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_INTERP = re.compile(r"\$\{(NOMAD_[A-Z_]+)\}")
ENFORCE = "Enforcing job modify index"


class HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise HTTPError(400, f'Failed to parse value of "{name}" ({value}) as bool: strconv.ParseBool: parsing '
                         f'"{value}": invalid syntax')


def parse_duration(text: str) -> float:
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            raise HTTPError(400, f"Invalid wait time: {text}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise HTTPError(400, f"Invalid wait time: {text}")
    return total


def validation_error(*problems: str) -> HTTPError:
    """Nomad's multierror text, as a 500 (job validation runs in the RPC layer)."""
    n = len(problems)
    body = f"{n} error{'s' if n > 1 else ''} occurred:\n" + "".join(f"\t* {p}\n" for p in problems) + "\n"
    return HTTPError(500, body)


# -- scripting ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    seconds: float = 0.05


@dataclass(frozen=True)
class Running:
    seconds: float = 0.05
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass(frozen=True)
class Exit:
    code: int = 0
    signal: int = 0


@dataclass(frozen=True)
class OOM:
    pass


@dataclass(frozen=True)
class DriverFailure:
    message: str = 'Failed to pull `missing/image:1`: Error response from daemon: manifest unknown'


@dataclass(frozen=True)
class Lost:
    pass


@dataclass(frozen=True)
class Run:
    """Run the task for real (the default when a job has no script)."""


Step = Pending | Running | Exit | OOM | DriverFailure | Lost | Run


@dataclass
class Node:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    name: str = "fake-node-1"
    datacenter: str = "dc1"
    node_pool: str = "default"
    node_class: str = ""
    cpu: int = 16000
    memory_mb: int = 16384
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class _Alloc:
    data: dict[str, Any]
    job_key: tuple[str, str]
    dir: Path
    process: subprocess.Popen[bytes] | None = None
    stop_requested: bool = False
    lost: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class FakeNomad:
    def __init__(self, *, nodes: Sequence[Node] | None = None, heartbeat: float = 30.0, event_buffer: int = 100,
                 acl_tokens: set[str] | None = None, log_rotate_bytes: int | None = None,
                 docker_map: Callable[[str, str, list[str]], list[str]] | None = None,
                 kill_grace: float = 1.0, events_enabled: bool = True,
                 vault_secrets: dict[str, dict[str, Any]] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.nodes = list(nodes or [Node()])
        self.heartbeat = heartbeat
        self.event_buffer = event_buffer
        self.acl_tokens = acl_tokens
        self.log_rotate_bytes = log_rotate_bytes
        self.docker_map = docker_map or (lambda image, command, args: [command, *args])
        self.kill_grace = kill_grace
        self.events_enabled = events_enabled
        self.ssl_context = ssl_context
        # Vault KV v2 data by API path ("secret/data/x"), for templates of tasks with a vault block.
        self.vault_secrets = vault_secrets if vault_secrets is not None else {}
        self.cond = threading.Condition()
        self.index = 1
        self.table_index = {"jobs": 1, "allocs": 1, "evals": 1}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.allocs: dict[str, _Alloc] = {}
        self.evals: dict[str, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=event_buffer)
        self.muted: set[str] = set()  # job ids whose events never reach the stream (a dropped buffer)
        self.scripts: list[tuple[str, tuple[Step, ...]]] = []
        self.requests: deque[tuple[str, str, dict[str, list[str]]]] = deque(maxlen=100_000)
        self.faults: list[tuple[str, int, str, int]] = []  # (path prefix, status, body, remaining)
        self.registrations = 0
        self.submitted: list[dict[str, Any]] = []  # every job body registered (kept after purge)
        self.alloc_jobs: dict[str, str] = {}  # every allocation ever created -> its job id (kept after GC)
        self._root = Path(tempfile.mkdtemp(prefix="fake-nomad-"))
        self._server: ThreadingHTTPServer | None = None
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeNomad:
        self._server, thread = start_server(self, _Handler, name="fake-nomad", ssl_context=self.ssl_context)
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
            allocs = list(self.allocs.values())
        for a in allocs:
            self._kill(a)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> FakeNomad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def addr(self) -> str:
        assert self._server is not None
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # -- test hooks -----------------------------------------------------------------------------
    def script(self, pattern: str, *steps: Step) -> None:
        """Allocations of jobs whose id (or docker image) matches ``pattern`` follow ``steps``."""
        self.scripts.insert(0, (pattern, steps))

    def fail(self, path_prefix: str, count: int = 1, status: int = 500,
             body: str = "rpc error: No cluster leader") -> None:
        with self.cond:
            self.faults.append((path_prefix, status, body, count))

    def lose(self, job_id: str, namespace: str = "default") -> None:
        """The node running this job's allocation went away: the alloc becomes ``lost``."""
        with self.cond:
            targets = [a for a in self.allocs.values() if a.job_key == (namespace, job_id)
                       and a.data["ClientStatus"] in ("pending", "running")]
            for a in targets:
                a.lost = True
        for a in targets:
            self._kill(a)
            with self.cond:
                self._update_alloc(a, ClientStatus="lost", DesiredStatus="stop",
                                   ClientDescription="alloc is lost since its node is down")
                self._task_state(a, "dead", failed=True)
                self._job_status(a.job_key)
            a.done.set()

    def calls(self, prefix: str = "/v1/") -> int:
        return sum(1 for _, path, _ in list(self.requests) if path.startswith(prefix))

    def job(self, job_id: str, namespace: str = "default") -> dict[str, Any] | None:
        with self.cond:
            return self.jobs.get((namespace, job_id))

    def allocs_of(self, job_id: str, namespace: str = "default") -> list[dict[str, Any]]:
        with self.cond:
            return [dict(a.data) for a in self.allocs.values() if a.job_key == (namespace, job_id)]

    def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.01)
        raise AssertionError("fake nomad: condition not met in time")

    def drop_streams(self) -> None:
        """End every open event stream now (a server restart, a load balancer idle cut)."""
        with self.cond:
            self._stream_generation = getattr(self, "_stream_generation", 0) + 1
            self.cond.notify_all()

    # -- state helpers (called with self.cond held) ---------------------------------------------
    def _bump(self, *tables: str) -> int:
        self.index += 1
        for t in tables:
            self.table_index[t] = self.index
        self.cond.notify_all()
        return self.index

    def _publish(self, topic: str, kind: str, key: str, namespace: str, payload: dict[str, Any],
                 filter_keys: list[str]) -> None:
        if key in self.muted or self.muted & set(filter_keys):
            return
        self.events.append({"Index": self.index, "Events": [{
            "Topic": topic, "Type": kind, "Key": key, "Namespace": namespace, "FilterKeys": filter_keys,
            "Index": self.index, "Payload": payload}]})
        self.cond.notify_all()

    def _update_alloc(self, a: _Alloc, **fields: Any) -> None:
        a.data.update(fields)
        idx = self._bump("allocs")
        a.data["ModifyIndex"] = idx
        a.data["AllocModifyIndex"] = idx
        a.data["ModifyTime"] = time.time_ns()
        self._publish("Allocation", "AllocationUpdated", a.data["ID"], a.data["Namespace"],
                      {"Allocation": dict(a.data)}, [a.data["JobID"], a.data["EvalID"]])

    def _task_state(self, a: _Alloc, state: str | None = None, *, failed: bool | None = None,
                    event: dict[str, Any] | None = None) -> None:
        ts = a.data["TaskStates"]["main"]
        if state is not None:
            ts["State"] = state
            if state == "running":
                ts["StartedAt"] = _now_rfc3339()
            if state == "dead":
                ts["FinishedAt"] = _now_rfc3339()
        if failed is not None:
            ts["Failed"] = failed
        if event is not None:
            ev = {"Type": event.pop("Type"), "Time": time.time_ns(), "FailsTask": False, "ExitCode": 0, "Signal": 0,
                  "Message": "", "DisplayMessage": "", "DriverError": "", "Details": {}, **event}
            ts["Events"] = [*ts["Events"], ev][-10:]  # Nomad keeps the latest ten

    def _job_status(self, job_key: tuple[str, str]) -> None:
        job = self.jobs.get(job_key)
        if job is None:
            return
        allocs = [a for a in self.allocs.values() if a.job_key == job_key]
        live = [a for a in allocs if a.data["ClientStatus"] in ("pending", "running")]
        status = "running" if live else ("dead" if allocs or job["Stop"] else "pending")
        if status != job["Status"]:
            job["Status"] = status  # Nomad emits no Job event for a status change, only a new index
            job["ModifyIndex"] = self._bump("jobs")

    # -- registration and placement -------------------------------------------------------------
    def register(self, body: dict[str, Any], namespace_q: str) -> dict[str, Any]:
        job = body.get("Job")
        if not isinstance(job, dict):
            raise HTTPError(400, "Job must be specified")
        namespace = job.get("Namespace") or namespace_q or "default"
        job_id = job.get("ID") or ""
        problems = []
        if not job_id:
            problems.append("Missing job ID")
        if " " in job_id or "\x00" in job_id:
            problems.append("Job ID contains a space" if " " in job_id else "Job ID contains a null character")
        if job.get("Type") not in ("batch", "service", "system", "sysbatch"):
            problems.append(f'Invalid job type: "{job.get("Type")}"')
        groups = job.get("TaskGroups") or []
        if not groups:
            problems.append("Missing job task groups")
        for g in groups:
            disk = (g.get("EphemeralDisk") or {}).get("SizeMB", 300)
            for t in g.get("Tasks") or []:
                lc = t.get("LogConfig") or {"MaxFiles": 10, "MaxFileSizeMB": 10}
                need = lc.get("MaxFiles", 10) * lc.get("MaxFileSizeMB", 10)
                if need * 2 > disk:  # stdout and stderr
                    problems.append(f"Task {t.get('Name')}: log storage ({need} MB) must be less than requested "
                                    f"disk capacity ({disk} MB)")
                if t.get("Driver") not in ("docker", "exec", "raw_exec"):
                    problems.append(f'Task {t.get("Name")}: missing driver or unknown driver "{t.get("Driver")}"')
        for k, v in (job.get("Meta") or {}).items():
            if not isinstance(v, str):
                problems.append(f"Meta value of {k!r} must be a string")
        if problems:
            raise validation_error(*problems)
        with self.cond:
            key = (namespace, job_id)
            existing = self.jobs.get(key)
            if body.get("EnforceIndex"):
                want = int(body.get("JobModifyIndex") or 0)
                if want == 0 and existing is not None:
                    raise HTTPError(500, f"{ENFORCE} 0: job already exists")
                if want != 0 and (existing is None or existing["JobModifyIndex"] != want):
                    have = existing["JobModifyIndex"] if existing else 0
                    raise HTTPError(500, f"{ENFORCE} {want}: job exists with conflicting job modify index: {have}")
            self.registrations += 1
            self.submitted.append(json.loads(json.dumps(job)))
            idx = self._bump("jobs")
            stored = {**job, "Namespace": namespace, "Status": "pending", "Stop": False, "Version": 0,
                      "CreateIndex": existing["CreateIndex"] if existing else idx, "ModifyIndex": idx,
                      "JobModifyIndex": idx, "SubmitTime": time.time_ns()}
            self.jobs[key] = stored
            self._publish("Job", "JobRegistered", job_id, namespace, {"Job": dict(stored)}, [])
            eval_id = self._evaluate(key, stored)
            return {"EvalID": eval_id, "EvalCreateIndex": self.evals[eval_id]["CreateIndex"], "JobModifyIndex": idx,
                    "Warnings": "", "Index": idx, "LastContact": 0, "KnownLeader": True}

    def _new_eval(self, job: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
        idx = self._bump("evals")
        ev = {"ID": str(uuid.uuid4()), "Namespace": job["Namespace"], "Priority": job.get("Priority", 50),
              "Type": job["Type"], "TriggeredBy": "job-register", "JobID": job["ID"], "Status": status,
              "StatusDescription": "", "CreateIndex": idx, "ModifyIndex": idx, "CreateTime": time.time_ns(),
              "ModifyTime": time.time_ns(), **extra}
        self.evals[ev["ID"]] = ev
        self._publish("Evaluation", "EvaluationUpdated", ev["ID"], ev["Namespace"], {"Evaluation": dict(ev)},
                      [job["ID"]])
        return ev

    def _fits(self, job: dict[str, Any], task: dict[str, Any]) -> tuple[Node | None, dict[str, Any]]:
        metrics: dict[str, Any] = {"NodesEvaluated": 0, "NodesFiltered": 0, "NodesExhausted": 0,
                                   "ClassFiltered": {}, "ConstraintFiltered": {}, "DimensionExhausted": {},
                                   "QuotaExhausted": None, "NodesAvailable": {}}
        dcs = job.get("Datacenters") or ["*"]
        res = task.get("Resources") or {}
        for node in self.nodes:
            if not any(fnmatch.fnmatch(node.datacenter, dc) for dc in dcs):
                continue
            if job.get("NodePool") and job["NodePool"] != node.node_pool:
                continue
            metrics["NodesAvailable"][node.datacenter] = metrics["NodesAvailable"].get(node.datacenter, 0) + 1
            metrics["NodesEvaluated"] += 1
            failed = None
            for c in job.get("Constraints") or []:
                target = c["LTarget"]
                have = (node.node_class if target == "${node.class}" else
                        node.meta.get(target[len("${meta."):-1]) if target.startswith("${meta.") else None)
                if c.get("Operand", "=") == "=" and have != c["RTarget"]:
                    failed = f"{target} = {c['RTarget']}"
                    break
            if failed:
                metrics["NodesFiltered"] += 1
                metrics["ConstraintFiltered"][failed] = metrics["ConstraintFiltered"].get(failed, 0) + 1
                continue
            if int(res.get("MemoryMB", 300)) > node.memory_mb:
                metrics["NodesExhausted"] += 1
                metrics["DimensionExhausted"]["memory"] = metrics["DimensionExhausted"].get("memory", 0) + 1
                continue
            if int(res.get("CPU", 100)) > node.cpu:
                metrics["NodesExhausted"] += 1
                metrics["DimensionExhausted"]["cpu"] = metrics["DimensionExhausted"].get("cpu", 0) + 1
                continue
            return node, metrics
        return None, metrics

    def _steps_for(self, job: dict[str, Any], task: dict[str, Any]) -> tuple[Step, ...]:
        image = (task.get("Config") or {}).get("image", "")
        for pattern, steps in self.scripts:
            if fnmatch.fnmatch(job["ID"], pattern) or (image and fnmatch.fnmatch(image, pattern)):
                return steps
        return (Run(),)

    def _evaluate(self, key: tuple[str, str], job: dict[str, Any]) -> str:
        group = job["TaskGroups"][0]
        task = group["Tasks"][0]
        node, metrics = self._fits(job, task)
        if node is None:
            blocked = self._new_eval(job, "blocked", StatusDescription="created to place remaining allocations")
            ev = self._new_eval(job, "complete", FailedTGAllocs={group["Name"]: metrics}, BlockedEval=blocked["ID"])
            return str(ev["ID"])
        ev = self._new_eval(job, "complete")
        steps = self._steps_for(job, task)
        alloc_id = str(uuid.uuid4())
        adir = self._root / alloc_id
        (adir / "alloc" / "logs").mkdir(parents=True)
        (adir / task["Name"] / "local").mkdir(parents=True)
        (adir / task["Name"] / "secrets").mkdir(parents=True)
        idx = self._bump("allocs")
        data = {
            "ID": alloc_id, "EvalID": ev["ID"], "Name": f"{job['ID']}.{group['Name']}[0]", "Namespace": key[0],
            "NodeID": node.id, "NodeName": node.name, "JobID": job["ID"], "JobType": job["Type"],
            "JobVersion": 0, "TaskGroup": group["Name"], "DesiredStatus": "run", "DesiredDescription": "",
            "ClientStatus": "pending", "ClientDescription": "No tasks have started",
            "TaskStates": {task["Name"]: {"State": "pending", "Failed": False, "Restarts": 0, "LastRestart": None,
                                          "StartedAt": None, "FinishedAt": None, "Events": []}},
            "FollowupEvalID": "", "PreviousAllocation": "", "NextAllocation": "", "RescheduleTracker": None,
            "CreateIndex": idx, "ModifyIndex": idx, "AllocModifyIndex": idx, "CreateTime": time.time_ns(),
            "ModifyTime": time.time_ns(),
        }
        a = _Alloc(data, key, adir)
        self.allocs[alloc_id] = a
        self.alloc_jobs[alloc_id] = job["ID"]
        self._task_state(a, event={"Type": "Received", "DisplayMessage": "Task received by client"})
        self._publish("Allocation", "AllocationCreated", alloc_id, key[0], {"Allocation": dict(data)},
                      [job["ID"], ev["ID"]])
        thread = threading.Thread(target=self._drive, args=(a, job, task, steps), name=f"fake-alloc-{alloc_id[:8]}",
                                  daemon=True)
        thread.start()
        return str(ev["ID"])

    # -- running an allocation ------------------------------------------------------------------
    def _sleep(self, a: _Alloc, seconds: float) -> bool:
        """Sleep unless the alloc is stopped or lost meanwhile; True when it should go on."""
        deadline = time.monotonic() + seconds
        with self.cond:
            while not (a.stop_requested or a.lost or self._stopping):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self.cond.wait(remaining)
        return False

    def _drive(self, a: _Alloc, job: dict[str, Any], task: dict[str, Any], steps: tuple[Step, ...]) -> None:
        try:
            with self.cond:
                self._task_state(a, event={"Type": "Task Setup", "Message": "Building Task Directory"})
                self._update_alloc(a)
            for step in steps:
                if a.lost or self._stopping:
                    return
                if a.stop_requested:
                    break
                if isinstance(step, Pending):
                    if not self._sleep(a, step.seconds):
                        break
                elif isinstance(step, Running):
                    self._set_running(a)
                    self._append_log(a, task, "stdout", step.stdout)
                    self._append_log(a, task, "stderr", step.stderr)
                    if not self._sleep(a, step.seconds):
                        break
                elif isinstance(step, Exit):
                    self._set_running(a)
                    self._terminate(a, step.code, signal_=step.signal)
                    return
                elif isinstance(step, OOM):
                    self._set_running(a)
                    self._terminate(a, 137, signal_=9, oom=True)
                    return
                elif isinstance(step, DriverFailure):
                    with self.cond:
                        self._task_state(a, "dead", failed=True, event={
                            "Type": "Driver Failure", "DriverError": step.message, "FailsTask": True,
                            "DisplayMessage": step.message})
                        self._update_alloc(a, ClientStatus="failed", ClientDescription="Failed tasks")
                        self._job_status(a.job_key)
                    return
                elif isinstance(step, Lost):
                    self.lose(job["ID"], a.job_key[0])
                    return
                elif isinstance(step, Run):
                    self._run(a, job, task)
                    return
            if a.stop_requested and not a.lost:
                self._terminate(a, None)
        finally:
            a.done.set()

    def _set_running(self, a: _Alloc) -> None:
        with self.cond:
            if a.data["ClientStatus"] == "running":
                return
            self._task_state(a, "running", event={"Type": "Started", "DisplayMessage": "Task started by client"})
            self._update_alloc(a, ClientStatus="running", ClientDescription="Tasks are running")
            self._job_status(a.job_key)

    def _terminate(self, a: _Alloc, code: int | None, *, signal_: int = 0, oom: bool = False) -> None:
        with self.cond:
            if a.data["ClientStatus"] in ("complete", "failed", "lost"):
                return
            if a.stop_requested:
                self._task_state(a, event={"Type": "Killing", "DisplayMessage": "Sent interrupt"})
            if code is not None:
                details = {"exit_code": str(code), "signal": str(signal_), "oom_killed": str(oom).lower()}
                ev: dict[str, Any] = {"Type": "Terminated", "ExitCode": code, "Signal": signal_, "Details": details,
                                      "DisplayMessage": f"Exit Code: {code}" + (", Exit Message: \"OOM Killed\""
                                                                                if oom else "")}
                if oom:
                    ev["Message"] = "OOM Killed"
                self._task_state(a, event=ev)
            if a.stop_requested:
                self._task_state(a, event={"Type": "Killed", "DisplayMessage": "Task successfully killed"})
            failed = code not in (0, None) and not a.stop_requested
            self._task_state(a, "dead", failed=failed)
            status = "complete" if (code == 0 or a.stop_requested) else "failed"
            self._update_alloc(a, ClientStatus=status,
                               ClientDescription="All tasks have completed" if status == "complete" else "Failed tasks")
            self._job_status(a.job_key)

    def _env(self, a: _Alloc, job: dict[str, Any], task: dict[str, Any]) -> dict[str, str]:
        base = {
            "NOMAD_ALLOC_DIR": str(a.dir / "alloc"), "NOMAD_TASK_DIR": str(a.dir / task["Name"] / "local"),
            "NOMAD_SECRETS_DIR": str(a.dir / task["Name"] / "secrets"), "NOMAD_ALLOC_ID": a.data["ID"],
            "NOMAD_JOB_ID": job["ID"], "NOMAD_JOB_NAME": job["ID"], "NOMAD_TASK_NAME": task["Name"],
            "NOMAD_NAMESPACE": a.job_key[0], "NOMAD_DC": self.nodes[0].datacenter,
        }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **base}
        for k, v in (task.get("Env") or {}).items():
            env[k] = _INTERP.sub(lambda m: base.get(m.group(1), m.group(0)), v)
        for tmpl in task.get("Templates") or []:
            text = render_template(tmpl.get("EmbeddedTmpl", ""), self.vault_secrets if task.get("Vault") else {})
            dest = a.dir / task["Name"] / tmpl["DestPath"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
            if tmpl.get("Envvars"):
                env.update(parse_env_file(text))
        return env

    def _run(self, a: _Alloc, job: dict[str, Any], task: dict[str, Any]) -> None:
        cfg = task.get("Config") or {}
        args = [str(x) for x in cfg.get("args") or []]
        if task["Driver"] == "docker":
            argv = self.docker_map(cfg.get("image", ""), cfg.get("command", ""), args)
        else:
            argv = [cfg.get("command", ""), *args]
        env = self._env(a, job, task)
        try:
            proc = subprocess.Popen(argv, env=env, cwd=str(a.dir / task["Name"]), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            with self.cond:
                msg = f"failed to launch command with executor: {exc}"
                self._task_state(a, "dead", failed=True, event={"Type": "Driver Failure", "DriverError": msg,
                                                                "FailsTask": True, "DisplayMessage": msg})
                self._update_alloc(a, ClientStatus="failed", ClientDescription="Failed tasks")
                self._job_status(a.job_key)
            return
        with self.cond:
            a.process = proc
            stop_now = a.stop_requested
        self._set_running(a)
        if stop_now:
            self._kill(a)
        pumps = [threading.Thread(target=self._pump, args=(a, task, kind, pipe), daemon=True)
                 for kind, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))]
        for p in pumps:
            p.start()
        code = proc.wait()
        for p in pumps:
            p.join(5)
        if a.lost:
            return
        self._terminate(a, code if code >= 0 else 128 - code, signal_=-code if code < 0 else 0)

    def _pump(self, a: _Alloc, task: dict[str, Any], kind: str, pipe: Any) -> None:
        while True:
            chunk = pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536)
            if not chunk:
                return
            self._append_log(a, task, kind, chunk)

    def _append_log(self, a: _Alloc, task: dict[str, Any], kind: str, data: bytes) -> None:
        if not data:
            return
        lc = task.get("LogConfig") or {"MaxFiles": 10, "MaxFileSizeMB": 10}
        limit = self.log_rotate_bytes or int(lc.get("MaxFileSizeMB", 10)) * 1024 * 1024
        logs = a.dir / "alloc" / "logs"
        with self.cond:
            while data:
                files = _log_files(logs, task["Name"], kind)
                current = files[-1] if files else logs / f"{task['Name']}.{kind}.0"
                size = current.stat().st_size if current.exists() else 0
                if size >= limit:
                    n = int(current.name.rsplit(".", 1)[1]) + 1
                    current = logs / f"{task['Name']}.{kind}.{n}"
                    size = 0
                    old = _log_files(logs, task["Name"], kind)
                    for gone in old[: max(0, len(old) + 1 - int(lc.get("MaxFiles", 10)))]:
                        gone.unlink()
                take = data[: limit - size]
                with current.open("ab") as fh:
                    fh.write(take)
                data = data[len(take):]
            self.cond.notify_all()

    def _kill(self, a: _Alloc) -> None:
        proc = a.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(self.kill_grace)
        except (ProcessLookupError, PermissionError):
            return
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return

    def deregister(self, namespace: str, job_id: str, purge: bool) -> dict[str, Any]:
        with self.cond:
            key = (namespace, job_id)
            job = self.jobs.get(key)
            if job is None:
                return {"EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": 0, "Index": self.index}
            allocs = [a for a in self.allocs.values() if a.job_key == key]
            for a in allocs:
                if a.data["DesiredStatus"] == "run":
                    a.stop_requested = True
                    self._update_alloc(a, DesiredStatus="stop", DesiredDescription="alloc not needed due to job update")
            job["Stop"] = True
            job["ModifyIndex"] = job["JobModifyIndex"] = self._bump("jobs")
            ev = self._new_eval(job, "complete", TriggeredBy="job-deregister")
            self._publish("Job", "JobDeregistered", job_id, namespace, {"Job": dict(job)}, [])
            if purge:
                del self.jobs[key]
            else:
                self._job_status(key)
            self.cond.notify_all()
        for a in allocs:
            self._kill(a)
            if a.process is None and a.data["ClientStatus"] in ("pending", "running"):
                self._terminate(a, None)
        if purge:  # the purged job's allocations are garbage-collected at once (the strict case)
            for a in allocs:
                a.done.wait(5)
            with self.cond:
                for a in allocs:
                    self.allocs.pop(a.data["ID"], None)
                    shutil.rmtree(a.dir, ignore_errors=True)
                self._bump("allocs")
        return {"EvalID": ev["ID"], "EvalCreateIndex": ev["CreateIndex"], "JobModifyIndex": job["JobModifyIndex"],
                "Index": self.index}


_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)


def render_template(text: str, secrets: dict[str, dict[str, Any]]) -> str:
    """consul-template for the forms task templates use: ``with secret``, ``if``/``else``/``end``,
    ``.Data.data.<field>`` with an optional ``| toJSON`` chain. A secret that does not exist renders
    its ``with`` block empty, as consul-template does for a missing KV v2 path."""
    out: list[str] = []
    stack: list[tuple[str, bool, dict[str, Any] | None]] = []  # (kind, emitting, scope)
    scope: dict[str, Any] | None = None
    pos = 0

    def emitting() -> bool:
        return all(frame[1] for frame in stack)

    for m in _ACTION.finditer(text):
        if emitting():
            out.append(text[pos:m.start()])
        pos = m.end()
        action = m.group(1)
        if action.startswith("with secret "):
            path = json.loads(action.split(" ", 2)[2])
            data = secrets.get(path)
            stack.append(("with", data is not None, scope))
            scope = data
        elif action.startswith("if "):
            value = _field(action[3:].strip(), scope)
            stack.append(("if", bool(value), scope))
        elif action == "else":
            kind, cond, saved = stack.pop()
            stack.append((kind, not cond, saved))
        elif action == "end":
            kind, _cond, saved = stack.pop()
            if kind == "with":
                scope = saved
        elif emitting():
            expr, *pipes = [p.strip() for p in action.split("|")]
            value: Any = _field(expr, scope)
            for pipe in pipes:
                if pipe != "toJSON":
                    raise ValueError(f"fake template: unsupported function {pipe!r}")
                value = json.dumps(value)
            out.append(value if isinstance(value, str) else json.dumps(value))
    if emitting():
        out.append(text[pos:])
    return "".join(out)


def _field(expr: str, scope: dict[str, Any] | None) -> Any:
    if not expr.startswith(".Data.data"):
        raise ValueError(f"fake template: unsupported expression {expr!r}")
    data = (scope or {}).get("data", {}) if scope is not None else {}
    rest = expr[len(".Data.data"):].lstrip(".")
    return data.get(rest) if rest else data


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines (values may be JSON-quoted), as Nomad reads an ``env = true`` template."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or key.lstrip().startswith("#"):
            continue
        value = value.strip()
        env[key.strip()] = json.loads(value) if value.startswith('"') else value
    return env


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _log_files(logs: Path, task: str, kind: str) -> list[Path]:
    found = [p for p in logs.glob(f"{task}.{kind}.*") if p.name.rsplit(".", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.rsplit(".", 1)[1]))


class _Handler(FakeHandler):
    fake: FakeNomad
    server_version = "FakeNomad/1.0"

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: Any, *, index: int | None = None, raw: bool = False) -> None:
        if raw:
            data = body if isinstance(body, bytes) else str(body).encode()
            ctype = "text/plain; charset=utf-8"
        else:
            data = json.dumps(body).encode()
            ctype = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if index is not None:
            self.send_header("X-Nomad-Index", str(index))
            self.send_header("X-Nomad-KnownLeader", "true")
            self.send_header("X-Nomad-LastContact", "0")
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")  # a complete chunked body: the connection stays usable
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        q = {k: v[-1] for k, v in query.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake.requests.append((method, path, query))
        with fake.cond:
            for i, (prefix, status, text, remaining) in enumerate(fake.faults):
                if remaining > 0 and path.startswith(prefix):
                    fake.faults[i] = (prefix, status, text, remaining - 1)
                    self._send(status, text, raw=True)
                    return
        if fake.acl_tokens is not None and not path.startswith("/v1/status/"):
            token = self.headers.get("X-Nomad-Token") or ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                token = auth[len("Bearer "):]
            if token not in fake.acl_tokens:
                self._send(403, "Permission denied", raw=True)
                return
        ns = q.get("namespace") or "default"
        try:
            self._route(method, path, q, query, ns, body)
        except HTTPError as exc:
            self._send(exc.status, exc.body, raw=True)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _blocking(self, q: dict[str, str], table: str, compute: Callable[[], Any]) -> tuple[int, Any]:
        fake = self.fake
        min_index = int(q.get("index") or 0)
        wait = min(parse_duration(q["wait"]) if q.get("wait") else 300.0, 600.0)
        with fake.cond:
            deadline = time.monotonic() + wait
            while min_index > 0 and fake.table_index[table] <= min_index and not fake._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                fake.cond.wait(remaining)
            return max(fake.table_index[table], 1), compute()

    def _route(self, method: str, path: str, q: dict[str, str], query: dict[str, list[str]], ns: str,
               body: bytes) -> None:
        fake = self.fake
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"]:
            raise HTTPError(404, "Invalid URL")
        parts = parts[1:]
        if parts == ["status", "leader"]:
            self._send(200, "127.0.0.1:4647")
        elif parts == ["jobs"] and method in ("PUT", "POST"):
            self._send(200, fake.register(_json(body), ns), index=fake.index)
        elif parts == ["jobs"] and method == "GET":
            meta = parse_bool("meta", q.get("meta"))
            prefix = q.get("prefix", "")

            def jobs() -> list[dict[str, Any]]:
                out = []
                for (jns, jid), job in sorted(fake.jobs.items()):
                    if (ns == "*" or jns == ns) and jid.startswith(prefix):
                        stub = {k: job.get(k) for k in ("ID", "Name", "Namespace", "Type", "Priority", "Status",
                                                        "Stop", "CreateIndex", "ModifyIndex", "JobModifyIndex",
                                                        "SubmitTime", "Datacenters")}
                        if meta:
                            stub["Meta"] = job.get("Meta")
                        out.append(stub)
                return out

            index, result = self._blocking(q, "jobs", jobs)
            self._send(200, result, index=index)
        elif len(parts) >= 2 and parts[0] == "job":
            self._job(method, parts[1], parts[2:], q, ns, body)
        elif parts == ["allocations"] and method == "GET":
            prefix = q.get("prefix", "")
            states = parse_bool("task_states", q.get("task_states"), True)

            def allocs() -> list[dict[str, Any]]:
                out = []
                for a in fake.allocs.values():
                    if (ns == "*" or a.job_key[0] == ns) and a.data["ID"].startswith(prefix):
                        d = json.loads(json.dumps(a.data))
                        if not states:
                            d.pop("TaskStates", None)
                        out.append(d)
                return sorted(out, key=lambda d: d["CreateIndex"])

            index, result = self._blocking(q, "allocs", allocs)
            self._send(200, result, index=index)
        elif len(parts) == 2 and parts[0] == "allocation" and method == "GET":
            with fake.cond:
                a = fake.allocs.get(parts[1])
                if a is None:
                    raise HTTPError(404, "alloc not found")
                data = {**json.loads(json.dumps(a.data)), "Job": fake.jobs.get(a.job_key)}
            self._send(200, data, index=fake.table_index["allocs"])
        elif len(parts) == 2 and parts[0] == "evaluation" and method == "GET":
            with fake.cond:
                ev = fake.evals.get(parts[1])
            if ev is None:
                raise HTTPError(404, "eval not found")
            self._send(200, ev, index=fake.table_index["evals"])
        elif parts == ["event", "stream"] and method == "GET":
            self._events(q, query, ns)
        elif len(parts) == 4 and parts[:2] == ["client", "fs"] and method == "GET":
            self._fs(parts[2], parts[3], q)
        else:
            raise HTTPError(404, f"Invalid method or path: {method} {path}")

    def _job(self, method: str, job_id: str, rest: list[str], q: dict[str, str], ns: str, body: bytes) -> None:
        fake = self.fake
        key = (ns, job_id)
        if not rest and method in ("PUT", "POST"):
            payload = _json(body)
            if (payload.get("Job") or {}).get("ID") != job_id:
                raise HTTPError(400, "Job ID does not match name")
            self._send(200, fake.register(payload, ns), index=fake.index)
        elif not rest and method == "GET":
            index, job = self._blocking(q, "jobs", lambda: fake.jobs.get(key))
            if job is None:
                raise HTTPError(404, "job not found")
            self._send(200, job, index=index)
        elif not rest and method == "DELETE":
            purge = parse_bool("purge", q.get("purge"))
            parse_bool("global", q.get("global"))
            self._send(200, fake.deregister(ns, job_id, purge), index=fake.index)
        elif rest == ["allocations"] and method == "GET":
            parse_bool("all", q.get("all"))

            def allocs() -> list[dict[str, Any]]:
                return [json.loads(json.dumps(a.data)) for a in fake.allocs.values() if a.job_key == key]

            index, result = self._blocking(q, "allocs", allocs)
            self._send(200, result, index=index)
        elif rest == ["evaluations"] and method == "GET":
            index, result = self._blocking(q, "evals", lambda: [dict(e) for e in fake.evals.values()
                                                                 if e["JobID"] == job_id and e["Namespace"] == ns])
            self._send(200, result, index=index)
        elif rest == ["summary"] and method == "GET":
            def summary() -> dict[str, Any] | None:
                job = fake.jobs.get(key)
                if job is None:
                    return None
                counts = dict.fromkeys(("Queued", "Complete", "Failed", "Running", "Starting", "Lost", "Unknown"), 0)
                allocs = [a for a in fake.allocs.values() if a.job_key == key]
                for a in allocs:
                    status = a.data["ClientStatus"]
                    name = {"pending": "Starting", "running": "Running", "complete": "Complete",
                            "failed": "Failed", "lost": "Lost"}.get(status, "Unknown")
                    counts[name] += 1
                if not allocs and not job["Stop"]:
                    counts["Queued"] = 1
                group = job["TaskGroups"][0]["Name"]
                return {"JobID": job_id, "Namespace": ns, "Summary": {group: counts},
                        "Children": {"Pending": 0, "Running": 0, "Dead": 0}, "CreateIndex": job["CreateIndex"],
                        "ModifyIndex": job["ModifyIndex"]}

            index, result = self._blocking(q, "jobs", summary)
            if result is None:
                raise HTTPError(404, "job not found")
            self._send(200, result, index=index)
        else:
            raise HTTPError(404, f"Invalid method or path: {method} /v1/job/{job_id}/{'/'.join(rest)}")

    # -- event stream ---------------------------------------------------------------------------
    def _events(self, q: dict[str, str], query: dict[str, list[str]], ns: str) -> None:
        fake = self.fake
        if not fake.events_enabled:
            raise HTTPError(404, "Invalid method or path")
        filters: dict[str, set[str]] = {}
        for topic in query.get("topic", []) or ["*"]:
            if topic.count(":") > 1:
                raise HTTPError(400, f"Invalid topic query: {topic}")
            name, _, key = topic.partition(":")
            filters.setdefault(name, set()).add(key or "*")
        index = int(q.get("index") or 0)

        def wanted(ev: dict[str, Any]) -> bool:
            if ns != "*" and ev["Namespace"] != ns:
                return False
            keys = filters.get(ev["Topic"]) or filters.get("*")
            if not keys:
                return False
            return "*" in keys or ev["Key"] in keys or any(k in keys for k in ev["FilterKeys"])

        self._start_stream()
        generation = getattr(fake, "_stream_generation", 0)
        sent = index - 1
        last_beat = time.monotonic()
        try:
            while True:
                with fake.cond:
                    batch = [m for m in fake.events if m["Index"] > sent]
                    if not batch:
                        fake.cond.wait(min(0.5, max(0.01, fake.heartbeat - (time.monotonic() - last_beat))))
                    stopping = fake._stopping or getattr(fake, "_stream_generation", 0) != generation
                if stopping:
                    break
                for message in batch:
                    sent = message["Index"]
                    events = [e for e in message["Events"] if wanted(e)]
                    if events:
                        self._chunk(json.dumps({"Index": message["Index"], "Events": events}).encode() + b"\n")
                if time.monotonic() - last_beat >= fake.heartbeat:
                    self._chunk(b"{}\n")
                    last_beat = time.monotonic()
        except OSError:
            self.close_connection = True
            return
        self._end_stream()

    # -- client fs ------------------------------------------------------------------------------
    def _alloc_dir(self, alloc_id: str) -> tuple[_Alloc, Path]:
        with self.fake.cond:
            a = self.fake.allocs.get(alloc_id)
        if a is None:
            raise HTTPError(404, f"Unknown allocation \"{alloc_id}\"")
        return a, a.dir

    def _fs(self, op: str, alloc_id: str, q: dict[str, str]) -> None:
        a, root = self._alloc_dir(alloc_id)
        if op == "logs":
            self._logs(a, root, q)
            return
        rel = q.get("path", "/").lstrip("/")
        target = (root / rel).resolve()
        if not str(target).startswith(str(root.resolve())):
            raise HTTPError(400, "path escapes the allocation directory")
        if op == "ls":
            if not target.is_dir():
                raise HTTPError(500, f"open {target}: no such file or directory")
            out = [{"Name": p.name, "IsDir": p.is_dir(), "Size": p.stat().st_size, "FileMode": "-rw-r--r--",
                    "ModTime": _now_rfc3339()} for p in sorted(target.iterdir())]
            self._send(200, out)
        elif op in ("cat", "readat"):
            if not target.is_file():
                raise HTTPError(500, f"open {target}: no such file or directory")
            data = target.read_bytes()
            if op == "readat":
                offset = int(q.get("offset") or 0)
                limit = int(q.get("limit") or len(data))
                data = data[offset: offset + limit]
            self._send(200, data, raw=True)
        else:
            raise HTTPError(404, "Invalid method or path")

    def _logs(self, a: _Alloc, root: Path, q: dict[str, str]) -> None:
        fake = self.fake
        task = q.get("task")
        kind = q.get("type")
        if not task:
            raise HTTPError(400, "must include task name")
        if kind not in ("stdout", "stderr"):
            raise HTTPError(400, "must include log type (stdout or stderr)")
        origin = q.get("origin", "start") or "start"
        if origin not in ("start", "end"):
            raise HTTPError(400, 'origin must be "start" or "end"')
        follow = parse_bool("follow", q.get("follow"))
        plain = parse_bool("plain", q.get("plain"))
        offset = int(q.get("offset") or 0)
        logs = root / "alloc" / "logs"

        def files() -> list[Path]:
            return _log_files(logs, task, kind)

        def total() -> int:
            return sum(p.stat().st_size for p in files() if p.exists())

        pos = offset if origin == "start" else max(0, total() - offset)
        self._start_stream()
        last_beat = time.monotonic()
        try:
            while True:
                sent_any = False
                base = 0
                for p in files():
                    try:
                        size = p.stat().st_size
                    except FileNotFoundError:
                        continue
                    if pos < base + size:
                        with p.open("rb") as fh:
                            fh.seek(pos - base)
                            data = fh.read(size - (pos - base))
                        if data:
                            if plain:
                                self._chunk(data)
                            else:
                                frame = {"File": f"alloc/logs/{p.name}", "Offset": pos - base + len(data),
                                         "Data": base64.b64encode(data).decode()}
                                self._chunk(json.dumps(frame).encode())
                            pos += len(data)
                            sent_any = True
                    base += size
                if pos > base:
                    pos = base  # truncated / rotated away
                dead = a.done.is_set() or a.data["TaskStates"].get(task, {}).get("State") == "dead"
                if not follow or (dead and not sent_any):
                    break
                if not sent_any:
                    if not plain and time.monotonic() - last_beat >= min(fake.heartbeat, 1.0):
                        self._chunk(b"{}")
                        last_beat = time.monotonic()
                    with fake.cond:
                        if fake._stopping:
                            break
                        fake.cond.wait(0.05)
        except OSError:
            self.close_connection = True
            return
        self._end_stream()


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise HTTPError(400, f"Failed to decode request body: {exc}") from exc
    if not isinstance(value, dict):
        raise HTTPError(400, "Failed to decode request body: expected an object")
    return value
