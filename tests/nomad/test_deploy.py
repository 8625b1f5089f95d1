"""Leoflow on Nomad (nomad/): the jobspecs parse, their config templates render only keys the config
loader knows, a rendered sample is a valid config, and a real scheduler process started on it
reloads on SIGHUP (what ``change_mode = "signal"`` sends)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import hcl2
import pytest

from leoflow import config as config_mod
from tests.fakes.consul import FakeConsul
from tests.fakes.nomad import FakeNomad, render_template

ROOT = Path(__file__).resolve().parents[2]
JOBS = {"leoflow-server": ROOT / "nomad" / "leoflow-server.nomad.hcl",
        "leoflow-scheduler": ROOT / "nomad" / "leoflow-scheduler.nomad.hcl"}
_KEY = re.compile(r'\{\{\s*keyOrDefault\s+"([^"]+)"\s+"([^"]*)"\s*(\|\s*toJSON\s*)?\}\}')
_ENV = re.compile(r'\{\{\s*env\s+"([^"]+)"\s*(\|\s*toJSON\s*)?\}\}')


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps string quotes ('"service"'); heredocs come as '"<<EOH\\n...EOH"'."""
    if isinstance(value, str) and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
        if value.startswith("<<"):
            marker, _, rest = value.partition("\n")
            value = rest[: rest.rfind(marker.lstrip("<-"))]
    return value


def _blocks(parent: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in parent.get(kind, []):
        for name, body in item.items():
            out[_unquote(name)] = body
    return out


def _job(name: str) -> dict[str, Any]:
    with JOBS[name].open() as fh:
        parsed = hcl2.load(fh)
    return _blocks(parsed, "job")[name]


def _templates(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(task, rendered-from text, template block) of every config template (local/leoflow.toml)."""
    out = []
    for group in _blocks(_job(name), "group").values():
        for task_name, task in _blocks(group, "task").items():
            for tmpl in task.get("template", []):
                if _unquote(tmpl["destination"]) == "local/leoflow.toml":
                    out.append((task_name, _unquote(tmpl["data"]), tmpl))
    return out


SAMPLE_SECRETS = {
    "secret/data/leoflow/consul": {"data": {"token": "sample-token"}},
    "secret/data/leoflow/nomad": {"data": {"token": "sample-token", "ca_pem": "-----BEGIN CERTIFICATE-----"}},
    "secret/data/leoflow/server": {"data": {"jwt_secret": "sample-jwt", "webhook_secret": 'we"bhook'}},
}


def render(text: str, kv: dict[str, str] | None = None,
           secrets: dict[str, dict[str, Any]] | None = None, env: dict[str, str] | None = None) -> str:
    """consul-template for the forms our templates use: keyOrDefault (+toJSON), env (+toJSON), then
    the Vault forms (with secret / if / .Data.data | toJSON) through the fake Nomad's renderer."""
    kv = kv or {}
    env = {"VAULT_ADDR": "https://vault.example:8200", **(env or {})}

    def env_var(m: re.Match[str]) -> str:
        name = m.group(1)
        value = "4646" if name.startswith("NOMAD_PORT") else env.get(name, "x")
        return json.dumps(value) if m.group(2) else value

    def key(m: re.Match[str]) -> str:
        value = kv.get(m.group(1), m.group(2))
        return json.dumps(value) if m.group(3) else value

    text = _KEY.sub(key, text)
    text = _ENV.sub(env_var, text)
    text = render_template(text, SAMPLE_SECRETS if secrets is None else secrets)
    assert "{{" not in text, f"a template form the test renderer does not know: {text}"
    return text


def _dotted(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for k, v in data.items():
        name = f"{prefix}.{k}" if prefix else k
        keys |= _dotted(v, name) if isinstance(v, dict) else {name}
    return keys


@pytest.mark.parametrize("name", sorted(JOBS))
def test_jobspecs_parse_with_the_required_stanzas(name: str) -> None:
    job = _job(name)
    assert _unquote(job["type"]) == "service"
    assert job["update"] and job["update"][0]["auto_revert"] is True
    (group,) = _blocks(job, "group").values()
    assert group["count"] >= 2
    assert group["restart"] and _unquote(group["restart"][0]["mode"]) == "delay"
    tasks = _blocks(group, "task")
    for task in tasks.values():
        assert task["resources"][0]["memory"] > 0 and task["resources"][0]["cpu"] > 0
        assert _unquote(task["kill_signal"]) == "SIGTERM"
    for task_name, _text, tmpl in _templates(name):
        assert _unquote(tmpl["change_mode"]) == "signal" and _unquote(tmpl["change_signal"]) == "SIGHUP", task_name


def test_the_server_job_registers_both_services_with_health_checks() -> None:
    (group,) = _blocks(_job("leoflow-server"), "group").values()
    services = {_unquote(s["name"]): s for s in group["service"]}
    assert set(services) == {"leoflow-server", "leoflow-agentrpc"}
    http_checks = {_unquote(c["path"]) for c in services["leoflow-server"]["check"]}
    assert "/health/ready" in http_checks
    assert _unquote(services["leoflow-agentrpc"]["check"][0]["type"]) == "grpc"
    tasks = _blocks(group, "task")
    assert _unquote(tasks["server"]["config"][0]["command"]) == "leoflow-server"
    assert next(_unquote(a) for a in tasks["agentrpc"]["config"][0]["args"]) == "agentrpc"
    scheduler = _blocks(_blocks(_job("leoflow-scheduler"), "group")["scheduler"], "task")["scheduler"]
    assert next(_unquote(a) for a in scheduler["config"][0]["args"]) == "scheduler"
    assert _blocks(_job("leoflow-scheduler"), "group")["scheduler"]["count"] == 2


@pytest.mark.parametrize("name", sorted(JOBS))
def test_templates_render_only_known_keys_and_a_valid_config(name: str, tmp_path: Path) -> None:
    known = config_mod.known_keys()
    templates = _templates(name)
    assert templates
    for task, text, _tmpl in templates:
        assert not re.search(r'\{\{\s*key\s+"', text), "use keyOrDefault: key blocks rendering until it exists"
        rendered = render(text)
        keys = _dotted(tomllib.loads(rendered))
        assert keys <= known, f"{name}/{task}: unknown config keys {sorted(keys - known)}"
        path = tmp_path / f"{task}.toml"
        path.write_text(rendered)
        cfg = config_mod.load(path, env={})
        assert cfg.store.backend == "consul" and cfg.store.consul_token == "sample-token"
        if task == "server":  # quotes in a secret survive toJSON into TOML
            assert cfg.auth.jwt_secret == "sample-jwt" and cfg.server.webhook_secret == 'we"bhook'
        # Without Vault secrets (no ACLs, no webhook) the file is still valid: optional fields are guarded.
        bare = config_mod.load(_write(tmp_path / f"{task}-bare.toml", render(text, secrets={})), env={})
        assert bare.store.consul_token == ""
        # A KV override of a number is still a valid config.
        tuned = render(text, {"leoflow/config/scheduler/parallelism": "64", "leoflow/config/server/workers": "8"})
        config_mod.load(_write(tmp_path / f"{task}-tuned.toml", tuned), env={})


def test_the_scheduler_template_runs_tasks_on_nomad_with_tls_verification() -> None:
    (_task, text, _t), = _templates("leoflow-scheduler")
    cfg = tomllib.loads(render(text))
    assert cfg["scheduler"]["executor"] == "nomad"
    assert cfg["nomad"]["addr"].startswith("https://") and cfg["nomad"]["ca_file"]
    assert cfg["nomad"]["token"] == "sample-token"


def test_the_agent_example_config_and_unit() -> None:
    agent = ROOT / "nomad" / "agent"
    cfg = config_mod.load(agent / "agent.toml", env={})
    assert cfg.agent.token_file and cfg.agent.tls_ca_file and cfg.agent.server.endswith(":8793")
    assert _dotted(tomllib.loads((agent / "agent.toml").read_text())) <= config_mod.known_keys()
    unit = (agent / "leoflow-agent.service").read_text()
    sections = re.findall(r"^\[(\w+)\]$", unit, re.M)
    assert sections == ["Unit", "Service", "Install"]
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M)
    assert exec_start and exec_start.group(1).split()[0].endswith("/leoflow-agent")
    assert "--config /etc/leoflow/agent.toml" in exec_start.group(1)
    assert re.search(r"^KillSignal=SIGTERM$", unit, re.M) and re.search(r"^Restart=on-failure$", unit, re.M)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_scheduler_started_on_the_rendered_config_reloads_it_on_sighup(tmp_path: Path) -> None:
    """Exactly what Nomad does on a KV change: re-render the file, then SIGHUP the task."""
    (_task, text, _t), = _templates("leoflow-scheduler")
    with FakeConsul(session_ttl_min=0.05) as consul, FakeNomad(heartbeat=0.3) as nomad:
        kv = {"leoflow/config/store/consul_addr": consul.addr, "leoflow/config/nomad/addr": nomad.addr,
              "leoflow/config/home": str(tmp_path / "home"), "leoflow/config/nomad/namespace": "default"}
        # No Vault in this test: Nomad sets VAULT_ADDR only for a task with a vault block and a Vault.
        path = _write(tmp_path / "leoflow.toml", render(text, kv, env={"VAULT_ADDR": ""})
                      .replace('ca_file = "/secrets/nomad-ca.pem"', ""))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEOFLOW_", "NOMAD_", "CONSUL_"))}
        env["LEOFLOW_SCHEDULER__METRICS_BIND"] = "127.0.0.1:0"  # the template's port env is not set here
        proc = subprocess.Popen([sys.executable, "-m", "leoflow.cli.main", "scheduler", "--config", str(path)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        try:
            _read_until(proc, lines, "scheduler started")
            _write(path, render(text, {**kv, "leoflow/config/scheduler/parallelism": "7",
                                       "leoflow/config/logging/level": "DEBUG"}, env={"VAULT_ADDR": ""})
                   .replace('ca_file = "/secrets/nomad-ca.pem"', ""))
            proc.send_signal(signal.SIGHUP)
            _read_until(proc, lines, "config reloaded")
            _write(path, "[scheduler\nbroken")
            proc.send_signal(signal.SIGHUP)
            _read_until(proc, lines, "config reload failed")
            assert proc.poll() is None, "a broken file is logged; the scheduler keeps running"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def _read_until(proc: subprocess.Popen[str], lines: list[str], needle: str, timeout: float = 30.0) -> None:
    """Read the process's output (on a thread, so a silent process cannot hang the test)."""
    assert proc.stdout is not None
    out = proc.stdout
    if not hasattr(proc, "_lines"):
        q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [q.put(line) for line in iter(out.readline, "")], daemon=True).start()
        proc._lines = q  # type: ignore[attr-defined]
    q = proc._lines  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        lines.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} not logged; output:\n{''.join(lines[-30:])}")
