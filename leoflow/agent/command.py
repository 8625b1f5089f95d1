"""Turning an assignment into an argv: always a list, never a shell string built from user data.

A task's ``command`` is already an argv (the DAG says ``["python", "job.py", "{{ ds }}"]``); if a
user wants a shell they write ``["sh", "-c", "..."]`` themselves, visibly. Environment values never
go into argv (where ``ps`` shows them): for containers only the *names* are passed (``-e NAME``)
and the container CLI reads the values from its own environment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

_CONTAINER_NAME = re.compile(r"[^a-zA-Z0-9_.-]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CommandError(ValueError):
    """The assignment cannot be turned into a safe argv; the message says which part."""


def process_argv(command: Sequence[str]) -> list[str]:
    argv = list(command)
    if not argv:
        raise CommandError("the task has an empty command")
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            raise CommandError(f"command[{i}] is not a string")
        if "\x00" in arg:
            raise CommandError(f"command[{i}] contains a NUL byte")
    return argv


def check_env(env: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise CommandError(f"environment variable name {name!r} is not valid")
        if "\x00" in value:
            raise CommandError(f"environment variable {name} contains a NUL byte")
        out[name] = value
    return out


def container_name(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """Deterministic, so a cancel can `kill` it by name and a duplicate start would collide, not double-run."""
    digest = hashlib.sha256(f"{dag_id}\x00{run_id}".encode()).hexdigest()[:10]
    raw = f"lf-{dag_id}-{task_id}-{map_index}-{try_number}-{digest}"
    return _CONTAINER_NAME.sub("_", raw)[:120]


def container_argv(cli: str, image: str, command: Sequence[str], env_names: Sequence[str], *, name: str,
                   workdir: str, cpu_mhz: int = 0, memory_mb: int = 0, memory_max_mb: int = 0) -> list[str]:
    """``memory_max`` (Nomad's oversubscription limit) is the hard cap and ``memory`` then only the
    reservation, as in a Nomad job; without it ``memory`` is the hard cap."""
    if not image or image.startswith("-"):
        raise CommandError(f"image {image!r} is not valid")
    argv = [cli, "run", "--rm", "--init", "--name", name, "-v", f"{workdir}:{workdir}", "-w", workdir]
    if memory_max_mb > 0:
        argv += ["--memory", f"{max(memory_max_mb, memory_mb)}m"]
        if memory_mb > 0:
            argv += ["--memory-reservation", f"{min(memory_mb, memory_max_mb)}m"]
    elif memory_mb > 0:
        argv += ["--memory", f"{memory_mb}m"]
    if cpu_mhz > 0:
        argv += ["--cpus", f"{max(cpu_mhz / 1000.0, 0.01):.2f}"]
    for env_name in env_names:
        if not _ENV_NAME.fullmatch(env_name):
            raise CommandError(f"environment variable name {env_name!r} is not valid")
        argv += ["-e", env_name]
    argv.append(image)
    argv += process_argv(command) if command else []
    return argv
