"""Prometheus metrics of agentrpc; each one is emitted and asserted in tests/agent/."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge


@dataclass(frozen=True)
class _Metrics:
    registrations: Counter
    connected: Gauge
    assignments: Counter
    reports: Counter
    log_lines: Counter
    heartbeat_timeouts: Counter
    token_expiries: Counter


METRICS = _Metrics(
    registrations=Counter("leoflow_agentrpc_registrations_total", "Agent registrations accepted"),
    connected=Gauge("leoflow_agentrpc_connected_agents", "Agents with an open stream to this process"),
    assignments=Counter("leoflow_agentrpc_assignments_total", "Tries claimed and sent to an agent"),
    reports=Counter("leoflow_agentrpc_reports_total", "State reports from agents, by how they were answered",
                    ["result"]),
    log_lines=Counter("leoflow_agentrpc_log_lines_total", "Task log lines written to the log store"),
    heartbeat_timeouts=Counter("leoflow_agentrpc_heartbeat_timeouts_total",
                               "Streams dropped because the agent stopped heartbeating"),
    token_expiries=Counter("leoflow_agentrpc_token_expiries_total",
                           "Streams ended UNAUTHENTICATED because their token expired while open"),
)
