"""Prometheus metrics of DAG loading (declared once per process, labelled by bundle)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SYNCS = Counter("leoflow_dag_syncs_total", "DAG bundle syncs, by outcome (ok, git_error).", ["bundle", "result"])
FILES_PARSED = Counter("leoflow_dag_files_parsed_total", "DAG files parsed (changed files only).", ["bundle"])
VERSIONS = Counter("leoflow_dag_versions_created_total", "New DAG versions recorded.", ["bundle"])
IMPORT_ERRORS = Gauge("leoflow_dag_import_errors", "DAG files that currently fail to import.", ["bundle"])
SYNC_SECONDS = Histogram("leoflow_dag_sync_seconds", "Duration of one bundle sync (fetch, parse, store).",
                         ["bundle"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
