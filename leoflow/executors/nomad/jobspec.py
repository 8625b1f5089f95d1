"""One Nomad batch job per try, built as plain JSON (pure: no I/O).

Why one job per try with a deterministic id: the id is the idempotency key. A scheduler that
fails over resubmits every queued try; registering with ``EnforceIndex`` and a modify index of 0
only creates a job that does not exist yet, so a try is never run twice (hashicorp.md §2.6).
Nomad must not retry on its own (restart/reschedule attempts 0): Leoflow's try numbers are the
only retry accounting (leoflow-lessons §8.3).

Secrets never travel in the job's plain ``Env``: a task that declares connections or variables
gets a ``vault`` block (workload identity) and a ``template`` that renders ``AIRFLOW_CONN_*`` /
``AIRFLOW_VAR_*`` from Vault KV into ``secrets/`` (a tmpfs Nomad keeps out of the job spec).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from leoflow.executors.port import TryKey, TryRequest

GROUP = "task"
TASK = "main"
# The file a task writes its XCom return value (JSON) into; in the shared alloc dir so the
# executor can read it through the client fs API after the task ended (adr/0083).
XCOM_FILE = "xcom_return.json"
XCOM_FS_PATH = f"alloc/{XCOM_FILE}"
DRIVERS = ("docker", "exec", "raw_exec")
META_KEYS = ("leoflow_dag_id", "leoflow_run_id", "leoflow_task_id", "leoflow_map_index", "leoflow_try_number")
# The ids (never values) of what the task declares, so an executor that adopts the job after a
# failover masks the same secrets in its log (adr/0097). Always present, empty when nothing is declared.
META_CONNECTIONS = "leoflow_connections"
META_VARIABLES = "leoflow_variables"
_TEMPLATE_SECRET = re.compile(r'^AIRFLOW_(CONN|VAR)_[A-Z0-9_]*=\{\{ with secret "([^"]+)" \}\}', re.MULTILINE)
_SAFE = re.compile(r"[^a-z0-9]+")
_ENV_NAME = re.compile(r"[^A-Z0-9_]")
MAX_JOB_ID = 96
_NS = 1_000_000_000


class JobSpecError(ValueError):
    """The try cannot become a Nomad job (bad driver, no image for docker, ...); names the field."""


@dataclass(frozen=True)
class JobSettings:
    """What the ``[nomad]`` and ``[vault]`` config sections add to every job."""

    namespace: str = "default"
    region: str = ""
    datacenters: tuple[str, ...] = ("dc1",)
    node_pool: str = ""
    node_class: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)
    job_prefix: str = "lf"
    priority: int = 50
    kill_timeout_s: float = 30.0
    log_max_files: int = 3
    log_max_file_size_mb: int = 10
    vault_role: str = ""
    kv_mount: str = "secret"
    connections_path: str = "leoflow/connections"
    variables_path: str = "leoflow/variables"


def _slug(text: str, limit: int) -> str:
    return _SAFE.sub("-", text.lower()).strip("-")[:limit].strip("-") or "x"


def job_id_for(key: TryKey, prefix: str = "lf") -> str:
    """``<prefix>-<dag>-<task>-<hash>-t<try>``: [a-z0-9-] only, at most 96 characters.

    The readable parts are truncated slugs (for operators reading ``nomad job status``); the hash
    of the exact ids keeps two tries that slug alike apart. python-nomad does not URL-encode
    path segments, so nothing outside the safe charset may ever reach a URL.
    """
    digest = hashlib.sha256(
        "\x00".join((key.dag_id, key.run_id, key.task_id, str(key.map_index))).encode()
    ).hexdigest()[:12]
    tail = f"-{digest}-t{key.try_number}"
    head = _slug(prefix, 8)
    room = MAX_JOB_ID - len(head) - len(tail) - 2  # two joining dashes
    dag = _slug(key.dag_id, room // 2)
    task = _slug(key.task_id, room - len(dag))
    return f"{head}-{dag}-{task}{tail}"


def job_prefix_of(prefix: str) -> str:
    """What every Leoflow task job id starts with (for listing and filtering events)."""
    return _slug(prefix, 8) + "-"


def try_meta(key: TryKey) -> dict[str, str]:
    return dict(zip(META_KEYS, (key.dag_id, key.run_id, key.task_id, str(key.map_index), str(key.try_number)),
                    strict=True))


def try_key_from_meta(meta: Mapping[str, str] | None) -> TryKey | None:
    """The try a job belongs to, from its meta; None for a job that is not a Leoflow try."""
    if not meta or any(k not in meta for k in META_KEYS):
        return None
    try:
        return TryKey(meta["leoflow_dag_id"], meta["leoflow_run_id"], meta["leoflow_task_id"],
                      int(meta["leoflow_map_index"]), int(meta["leoflow_try_number"]))
    except ValueError:
        return None


Declared = tuple[tuple[str, ...], tuple[str, ...]]  # (connection ids, variable keys)


def _split_ids(text: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in text.split(",")) if part)


def declared_from_meta(meta: Mapping[str, str] | None) -> Declared | None:
    """The declared connections and variables a job's meta names; None for a job built before
    they were recorded there (the caller then reads them from the job's template)."""
    if not meta or META_CONNECTIONS not in meta or META_VARIABLES not in meta:
        return None
    return _split_ids(meta[META_CONNECTIONS] or ""), _split_ids(meta[META_VARIABLES] or "")


def declared_from_job(job: Mapping[str, Any] | None) -> Declared:
    """What a job declares: from its meta, else from the paths its secrets template reads."""
    if not job:
        return (), ()
    found = declared_from_meta(job.get("Meta"))
    if found is not None:
        return found
    conns: list[str] = []
    variables: list[str] = []
    for group in job.get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            for tmpl in task.get("Templates") or []:
                for kind, path in _TEMPLATE_SECRET.findall(str(tmpl.get("EmbeddedTmpl") or "")):
                    ident = path.rsplit("/", 1)[-1]
                    (conns if kind == "CONN" else variables).append(ident)
    return tuple(conns), tuple(variables)


def env_name(kind: str, ident: str) -> str:
    """Airflow's variable names: ``AIRFLOW_CONN_<ID>`` / ``AIRFLOW_VAR_<KEY>`` (upper case)."""
    return f"AIRFLOW_{kind}_" + _ENV_NAME.sub("_", ident.upper())


def secrets_template(request: TryRequest, s: JobSettings) -> str:
    """consul-template text rendering the task's declared secrets as an env file.

    Connections are read from ``<mount>/data/<connections_path>/<id>``: a ``conn_uri`` field is
    used as is (Airflow's Vault backend convention), otherwise the whole secret becomes the JSON
    form Airflow also accepts. Variables read the ``value`` field. ``toJSON`` quotes each value
    so quotes and newlines survive the env-file parser.
    """
    lines = []
    for conn in request.connections:
        path = f"{s.kv_mount}/data/{s.connections_path.strip('/')}/{conn}"
        lines.append(
            f'{env_name("CONN", conn)}={{{{ with secret "{path}" }}}}{{{{ if .Data.data.conn_uri }}}}'
            "{{ .Data.data.conn_uri | toJSON }}{{ else }}{{ .Data.data | toJSON | toJSON }}{{ end }}{{ end }}"
        )
    for var in request.variables:
        path = f"{s.kv_mount}/data/{s.variables_path.strip('/')}/{var}"
        lines.append(f'{env_name("VAR", var)}={{{{ with secret "{path}" }}}}'
                     "{{ .Data.data.value | toJSON }}{{ end }}")
    return "\n".join(lines) + "\n"


def _task_config(request: TryRequest) -> tuple[str, dict[str, Any]]:
    driver = request.driver or "docker"
    if driver not in DRIVERS:
        raise JobSpecError(f"task {request.key.task_id!r}: driver {driver!r} is not one of {', '.join(DRIVERS)}")
    if not request.command:
        raise JobSpecError(f"task {request.key.task_id!r}: command is empty")
    command, *args = request.command
    if driver == "docker":
        if not request.image:
            raise JobSpecError(f"task {request.key.task_id!r}: the docker driver needs an image")
        return driver, {"image": request.image, "command": command, "args": args}
    return driver, {"command": command, "args": args}


def build_job(request: TryRequest, s: JobSettings) -> dict[str, Any]:
    """The ``Job`` object (Nomad's JSON job shape) for one try."""
    key = request.key
    job_id = job_id_for(key, s.job_prefix)
    driver, config = _task_config(request)
    env = {k: v for k, v in request.env.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.update({
        "AIRFLOW_CTX_DAG_ID": key.dag_id,
        "AIRFLOW_CTX_DAG_RUN_ID": key.run_id,
        "AIRFLOW_CTX_TASK_ID": key.task_id,
        "AIRFLOW_CTX_TRY_NUMBER": str(key.try_number),
        "AIRFLOW_CTX_MAP_INDEX": str(key.map_index),
        # Nomad interpolates ${NOMAD_ALLOC_DIR} at run time (/alloc in docker, a host path otherwise).
        "LEOFLOW_XCOM_RETURN": "${NOMAD_ALLOC_DIR}/" + XCOM_FILE,
    })
    res = request.resources
    resources: dict[str, Any] = {"CPU": int(res.cpu), "MemoryMB": int(res.memory)}
    if res.memory_max:
        resources["MemoryMaxMB"] = int(res.memory_max)
    task: dict[str, Any] = {
        "Name": TASK,
        "Driver": driver,
        "Config": config,
        "Env": env,
        "Resources": resources,
        "LogConfig": {"MaxFiles": s.log_max_files, "MaxFileSizeMB": s.log_max_file_size_mb},
        "KillTimeout": int(s.kill_timeout_s * _NS),
    }
    if request.connections or request.variables:
        vault: dict[str, Any] = {"ChangeMode": "noop"}
        if s.vault_role:
            vault["Role"] = s.vault_role
        task["Vault"] = vault
        # noop: a batch task must not be restarted (RestartPolicy 0 would fail it) on rotation.
        task["Templates"] = [{"EmbeddedTmpl": secrets_template(request, s), "DestPath": "secrets/leoflow.env",
                              "Envvars": True, "ChangeMode": "noop", "Perms": "0400"}]
    constraints: list[dict[str, str]] = []
    if s.node_class:
        constraints.append({"LTarget": "${node.class}", "RTarget": s.node_class, "Operand": "="})
    if request.queue and request.queue != "default":
        # A task's queue picks Nomad clients that advertise it (client meta leoflow_queue).
        constraints.append({"LTarget": "${meta.leoflow_queue}", "RTarget": request.queue, "Operand": "="})
    disk = max(300, 2 * s.log_max_files * s.log_max_file_size_mb + 50)
    group: dict[str, Any] = {
        "Name": GROUP,
        "Count": 1,
        "RestartPolicy": {"Attempts": 0, "Interval": 86400 * _NS, "Delay": 15 * _NS, "Mode": "fail"},
        "ReschedulePolicy": {"Attempts": 0, "Interval": 0, "Delay": 5 * _NS, "DelayFunction": "constant",
                             "Unlimited": False},
        "EphemeralDisk": {"SizeMB": disk},
        "Tasks": [task],
    }
    meta = {**s.meta, **try_meta(key), "leoflow_queue": request.queue,
            META_CONNECTIONS: ",".join(request.connections), META_VARIABLES: ",".join(request.variables)}
    if request.timeout_seconds:
        meta["leoflow_timeout"] = f"{request.timeout_seconds:g}"
    job: dict[str, Any] = {
        "ID": job_id,
        "Name": job_id,
        "Namespace": s.namespace,
        "Type": "batch",
        "Datacenters": list(s.datacenters),
        "Priority": max(1, min(100, s.priority)),
        "Meta": meta,
        "Constraints": constraints or None,
        "TaskGroups": [group],
    }
    if s.region:
        job["Region"] = s.region
    if s.node_pool:
        job["NodePool"] = s.node_pool
    return {k: v for k, v in job.items() if v is not None}


def register_body(job: Mapping[str, Any]) -> dict[str, Any]:
    """Create-only registration: fails with "Enforcing job modify index" when the job exists."""
    return {"EnforceIndex": True, "JobModifyIndex": 0, "Job": dict(job)}
