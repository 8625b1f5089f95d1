"""What an allocation (or an evaluation) says about a try (pure: dicts in, a verdict out).

The traps this encodes (hashicorp.md §2.6): ``complete`` is not success when the allocation was
stopped (``DesiredStatus`` stop/evict) or the task's exit code is not 0; only the latest ten task
events are kept, so the verdict reads the newest relevant event; ``lost`` is the infrastructure's
failure (a node went away), not the task's, and is reported as LOST so it spends no retry
(adr/0034); ``unknown`` (a disconnected client) is not terminal yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from leoflow.executors.nomad.jobspec import GROUP, TASK
from leoflow.executors.port import TryOutcome

_FAILURE_EVENTS = ("Driver Failure", "Setup Failure", "Failed Validation", "Failed Artifact Download",
                   "Task hook failed", "Failed Restoring Task")


@dataclass(frozen=True)
class Verdict:
    """``outcome`` None: nothing to report yet (pending, or a state that is not terminal)."""

    outcome: TryOutcome | None
    exit_code: int | None = None
    reason: str | None = None
    node: str | None = None


def _events(alloc: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    states = alloc.get("TaskStates") or {}
    state = states.get(TASK) or {}
    return state.get("Events") or ()


def _last(events: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    for event in reversed(events):
        if event.get("Type") == kind:
            return event
    return None


def _text(event: Mapping[str, Any]) -> str:
    for name in ("DisplayMessage", "DriverError", "Message", "SetupError", "ValidationError", "DownloadError"):
        value = event.get(name)
        if value:
            return str(value)
    return ""


def _oom(event: Mapping[str, Any]) -> bool:
    details = event.get("Details") or {}
    return str(details.get("oom_killed", "")).lower() == "true" or event.get("Message") == "OOM Killed"


def verdict(alloc: Mapping[str, Any], *, memory_mb: int | None = None, stopped_by_us: bool = False) -> Verdict:
    """The try's state as this allocation shows it.

    ``stopped_by_us``: Leoflow deregistered the job (a cancel or a timeout); the stopped
    allocation is then the expected end, and the caller supplies the reason.
    """
    node = alloc.get("NodeName") or alloc.get("NodeID") or None
    client = alloc.get("ClientStatus") or "pending"
    desired = alloc.get("DesiredStatus") or "run"
    events = _events(alloc)
    terminated = _last(events, "Terminated")
    exit_code = None
    if terminated is not None and terminated.get("ExitCode") is not None:
        exit_code = int(terminated["ExitCode"])
    if client == "lost":
        why = alloc.get("ClientDescription") or "the node running it went down"
        return Verdict(TryOutcome.LOST, exit_code, f"Nomad allocation lost: {why}", node)
    if client in ("pending", "unknown"):
        return Verdict(None, node=node)
    if client == "running":
        if desired in ("stop", "evict") and not stopped_by_us:
            return Verdict(None, node=node)  # being stopped; the terminal update follows
        return Verdict(TryOutcome.STARTED, node=node)
    # complete | failed
    if desired in ("stop", "evict") and (stopped_by_us or terminated is None or exit_code != 0):
        killed = _last(events, "Killed") or _last(events, "Killing")
        what = f" ({_text(killed)})" if killed is not None and _text(killed) else ""
        if stopped_by_us:
            return Verdict(TryOutcome.FAILED, exit_code, "cancelled", node)
        return Verdict(TryOutcome.FAILED, exit_code,
                       f"the Nomad job was stopped outside Leoflow (allocation {desired}){what}", node)
    for kind in _FAILURE_EVENTS:
        failure = _last(events, kind)
        if failure is not None:
            label = kind.lower()
            return Verdict(TryOutcome.FAILED, exit_code, f"{label}: {_text(failure) or 'no detail from Nomad'}", node)
    if terminated is not None and _oom(terminated):
        limit = f" of {memory_mb} MiB" if memory_mb else ""
        code = f" (exit code {exit_code})" if exit_code is not None else ""
        return Verdict(TryOutcome.FAILED, exit_code,
                       f"OOM killed: the task went over its memory limit{limit}{code}", node)
    if client == "complete" and exit_code == 0:
        return Verdict(TryOutcome.SUCCESS, 0, None, node)
    if exit_code is not None and exit_code != 0:
        signal = terminated.get("Signal") if terminated is not None else 0
        sig = f", signal {signal}" if signal else ""
        return Verdict(TryOutcome.FAILED, exit_code, f"exit code {exit_code}{sig}", node)
    state = (alloc.get("TaskStates") or {}).get(TASK) or {}
    detail = alloc.get("ClientDescription") or (_text(events[-1]) if events else "")
    if client == "complete" and not state.get("Failed"):
        return Verdict(TryOutcome.SUCCESS, exit_code, None, node)
    return Verdict(TryOutcome.FAILED, exit_code, f"Nomad allocation failed: {detail or 'no detail from Nomad'}", node)


def placement_reason(evaluations: Sequence[Mapping[str, Any]]) -> str | None:
    """Why Nomad could not place the job, from its evaluations' ``FailedTGAllocs``; None: no failure seen."""
    for ev in sorted(evaluations, key=lambda e: e.get("ModifyIndex", 0), reverse=True):
        failed = (ev.get("FailedTGAllocs") or {}).get(GROUP)
        if not failed:
            continue
        parts = [f"{failed.get('NodesEvaluated', 0)} nodes evaluated"]
        for field, label in (("DimensionExhausted", "exhausted"), ("ConstraintFiltered", "filtered by constraint"),
                             ("ClassFiltered", "filtered by class"), ("QuotaExhausted", "quota exhausted")):
            value = failed.get(field)
            if isinstance(value, Mapping) and value:
                parts.append(f"{label}: " + ", ".join(f"{k} on {v}" for k, v in sorted(value.items())))
            elif isinstance(value, list) and value:
                parts.append(f"{label}: " + ", ".join(map(str, value)))
        if failed.get("NodesAvailable") == {} or failed.get("NodesEvaluated", 1) == 0:
            parts.append("no node is available in the requested datacenters/pool")
        return "; ".join(parts)
    return None
