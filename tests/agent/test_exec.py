"""Commands and runtimes: argv only, env values never in argv, process groups, the container CLI."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest

from leoflow.agent.command import CommandError, check_env, container_argv, container_name, process_argv
from leoflow.agent.exec import find_container_cli, start_process
from leoflow.executors.port import TryOutcome
from tests.agent.conftest import Rig


def test_process_argv_refuses_empty_and_nul() -> None:
    assert process_argv(("echo", "a b; rm -rf /")) == ["echo", "a b; rm -rf /"]
    with pytest.raises(CommandError, match="empty command"):
        process_argv(())
    with pytest.raises(CommandError, match=r"command\[1\] contains a NUL"):
        process_argv(("echo", "a\x00b"))


def test_env_names_are_checked() -> None:
    assert check_env({"OK_1": "v"}) == {"OK_1": "v"}
    with pytest.raises(CommandError, match="'1BAD'"):
        check_env({"1BAD": "v"})


def test_container_argv_passes_env_by_name_only() -> None:
    argv = container_argv("docker", "alpine:3", ["sh", "-c", "echo $SECRET"], ["SECRET"], name="lf-x",
                          workdir="/w", cpu_mhz=500, memory_mb=256)
    assert "-e" in argv and "SECRET" in argv
    assert not any("=" in a and a.startswith("SECRET") for a in argv)
    assert argv[argv.index("alpine:3") + 1 :] == ["sh", "-c", "echo $SECRET"]
    assert argv[argv.index("--memory") : argv.index("--memory") + 2] == ["--memory", "256m"]
    with pytest.raises(CommandError, match="image"):
        container_argv("docker", "--privileged", ["true"], [], name="x", workdir="/w")


def test_container_name_is_deterministic_and_safe() -> None:
    a = container_name("d", "manual__2026-01-01T00:00:00+00:00", "t x", -1, 2)
    assert a == container_name("d", "manual__2026-01-01T00:00:00+00:00", "t x", -1, 2)
    assert all(c.isalnum() or c in "_.-" for c in a)
    assert a != container_name("d", "other", "t x", -1, 2)


def test_output_lines_arrive_per_stream(tmp_path: Path) -> None:
    got: list[tuple[str, str]] = []
    proc = start_process(["sh", "-c", "echo one; echo two >&2; printf 'no newline'"], {}, tmp_path,
                         lambda s, t: got.append((s, t)))
    status = proc.wait(10)
    assert status.exit_code == 0 and status.killed_for is None
    assert ("stdout", "one") in got and ("stderr", "two") in got and ("stdout", "no newline") in got


def _fake_cli(bin_dir: Path, name: str, record: Path) -> None:
    """A docker/podman stand-in: records its argv and environment names, then runs the command."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps({{'argv': sys.argv, 'env': sorted(os.environ)}}) + '\\n')\n"
        "args = sys.argv[1:]\n"
        "if args[0] != 'run':\n    sys.exit(0)\n"
        "i = 1\n"
        "while args[i].startswith('-'):\n"
        "    i += 1 if args[i] in ('--rm', '--init') else 2\n"
        "os.execvp(args[i + 1], args[i + 1:])\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_container_runtime_when_the_queue_asks_and_the_cli_exists(rig: Rig, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "docker-calls.ndjson"
    _fake_cli(tmp_path / "bin", "docker", record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert find_container_cli("auto") == str(tmp_path / "bin" / "docker")
    object.__setattr__(rig.server.settings, "container_queues", frozenset({"containers"}))
    rig.agent(pools=("containers", "default"))
    from leoflow.executors.port import TryKey, TryRequest

    key = TryKey("dag_a", "r1", "boxed", -1, 1)
    rig.executor.submit(TryRequest(key, ("sh", "-c", "echo in-box"), image="alpine:3", queue="containers",
                                   env={"API_TOKEN": "s3cr3t"}))
    assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    call = json.loads(record.read_text().splitlines()[0])
    assert call["argv"][1:3] == ["run", "--rm"] and "alpine:3" in call["argv"]
    assert "API_TOKEN" in call["argv"] and "s3cr3t" not in " ".join(call["argv"])
    assert "API_TOKEN" in call["env"]
    # The same image task on a queue that does not ask for containers runs as a plain process.
    plain = TryKey("dag_a", "r1", "plain", -1, 1)
    rig.executor.submit(TryRequest(plain, ("true",), image="alpine:3", queue="default"))
    assert rig.wait_terminal(plain).outcome is TryOutcome.SUCCESS
    assert len(record.read_text().splitlines()) == 1


def test_container_asked_but_no_cli_fails_with_the_reason(rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    object.__setattr__(rig.server.settings, "container_queues", frozenset({"default"}))
    rig.agent()
    from leoflow.executors.port import TryKey, TryRequest

    key = TryKey("dag_a", "r1", "boxed", -1, 1)
    rig.executor.submit(TryRequest(key, ("true",), image="alpine:3"))
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.FAILED
    assert "neither docker nor podman is installed" in (event.reason or "")


def test_container_argv_memory_max_is_the_hard_limit_and_memory_the_reservation() -> None:
    def memory_flags(**kw: int) -> list[str]:
        argv = container_argv("podman", "alpine:3", ["true"], [], name="x", workdir="/w", **kw)
        return [f"{a}={b}" for a, b in itertools.pairwise(argv) if a.startswith("--memory")]

    assert memory_flags(memory_mb=256, memory_max_mb=1024) == ["--memory=1024m", "--memory-reservation=256m"]
    assert memory_flags(memory_mb=256) == ["--memory=256m"]
    assert memory_flags(memory_max_mb=512) == ["--memory=512m"]
    assert memory_flags() == []


def test_memory_max_reaches_the_container_cli_through_agentrpc(rig: Rig, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from leoflow.domain.dag import Resources
    from leoflow.executors.port import TryKey, TryRequest

    record = tmp_path / "docker-calls.ndjson"
    _fake_cli(tmp_path / "bin", "docker", record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    object.__setattr__(rig.server.settings, "container_queues", frozenset({"default"}))
    rig.agent()
    key = TryKey("dag_a", "r1", "big", -1, 1)
    rig.executor.submit(TryRequest(key, ("true",), image="alpine:3",
                                   resources=Resources(cpu=500, memory=300, memory_max=900)))
    assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    argv = json.loads(record.read_text().splitlines()[0])["argv"]
    assert argv[argv.index("--memory") + 1] == "900m"
    assert argv[argv.index("--memory-reservation") + 1] == "300m"
