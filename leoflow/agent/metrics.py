"""Prometheus metrics of leoflow-agent, served on ``[agent] metrics_bind``; each asserted in tests/agent/."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class _Metrics:
    running: Gauge
    capacity: Gauge
    reconnects: Counter
    durations: Histogram
    exit_codes: Counter


METRICS = _Metrics(
    running=Gauge("leoflow_agent_running_tasks", "Tries running on this agent now"),
    capacity=Gauge("leoflow_agent_capacity", "Tries this agent runs at once"),
    reconnects=Counter("leoflow_agent_reconnects_total", "Times the agent dialled again after losing its stream"),
    durations=Histogram("leoflow_agent_task_duration_seconds", "Wall time of finished tries",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))),
    exit_codes=Counter("leoflow_agent_task_exit_codes_total", "Finished tries by exit code", ["exit_code"]),
)
