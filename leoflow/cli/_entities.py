"""What connections, variables and pools share: files in Airflow's CLI formats, bulk writes through
the API, and reading secrets straight from the store when the user asks for them.

Secrets (adr/0075): the API never returns a connection password or a sensitive variable value
(it answers ``***``), so the CLI cannot print them from the server. ``--show-secrets`` therefore
reads the records from the configured store directly, as ``leoflow users`` does: it works only
where the store is reachable with the operator's own credentials (the SQLite file, or a Consul
token), which is the same trust a secret needs anyway. Without it, ``***`` is what you see.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from leoflow.cli.client import ApiClient
from leoflow.cli.errors import CliError

MASK = "***"


def file_format(path: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json" or path == "-":
        return "json"
    raise CliError(f"{path}: unknown file type {suffix or '(none)'}; use .json, .yaml or .yml, or --format",
                   exit_code=2)


def read_mapping(path: str, fmt: str | None, what: str) -> dict[str, Any]:
    """A ``{id: definition}`` file as Airflow's CLI writes it; errors name the file and position."""
    kind = file_format(path, fmt)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text) if kind == "yaml" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        raise CliError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping of {what} id to its definition, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def write_mapping(path: str, fmt: str | None, data: dict[str, Any], *, private: bool = False) -> None:
    kind = file_format(path, fmt)
    text = (yaml.safe_dump(data, sort_keys=True, allow_unicode=True, default_flow_style=False) if kind == "yaml"
            else json.dumps(data, indent=4, sort_keys=True) + "\n")
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    # A file that may hold secrets is created owner-only, never world-readable for a moment.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        if private:
            os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def bulk_create(client: ApiClient, path: str, entities: list[dict[str, Any]],
                on_existing: str) -> tuple[list[str], list[str]]:
    """One bulk request (Airflow's ``PATCH`` collection body); returns (succeeded ids, error lines)."""
    if not entities:
        return [], []
    body = {"actions": [{"action": "create", "entities": entities, "action_on_existence": on_existing}]}
    result = client.patch(path, body)
    create = (result or {}).get("create") or {}
    errors = [str(e.get("error") if isinstance(e, dict) else e) for e in create.get("errors") or []]
    return [str(s) for s in create.get("success") or []], errors


def report_import(noun: str, total: int, done: list[str], errors: list[str], skipped: list[str]) -> int:
    print(f"{len(done)} of {total} {noun} imported" + (f"; {len(skipped)} skipped" if skipped else ""))
    for line in errors:
        print(f"leoflow: error: {line}", file=sys.stderr)
    return 1 if errors else 0


@contextmanager
def store_repos() -> Iterator[Any]:
    """The configured store's repositories, for ``--show-secrets`` (see the module docstring)."""
    from leoflow.config import ConfigError, load
    from leoflow.store.factory import open_store, sqlite_path
    from leoflow.store.port import StoreError
    from leoflow.store.repos import build

    try:
        config = load()
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if config.store.backend == "sqlite" and not sqlite_path(config).exists():
        raise CliError(f"--show-secrets reads the store directly (the API never returns secrets), but there is no "
                       f"store at {sqlite_path(config)}; run it where the store is, with LEOFLOW_HOME or "
                       "LEOFLOW_CONFIG set as for the server")
    try:
        store = open_store(config)
    except StoreError as exc:
        raise CliError(f"--show-secrets reads the store directly: cannot open it ({config.store.backend}): {exc}"
                       ) from exc
    try:
        yield build(store, config=config)
    except StoreError as exc:
        raise CliError(f"reading the store failed: {exc}") from exc
    finally:
        store.close()
    print("leoflow: secrets shown as stored (read from the store, not the API)", file=sys.stderr)
