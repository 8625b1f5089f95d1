"""Load DAG files: find them in a bundle directory and parse each one into DAGs or errors.

A file yields a ``ParsedFile``: its DAGs (validated, with ``fileloc`` set) or its errors, never
both, and never an exception: one broken file must not stop the others from loading.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leoflow.dags.build import Issue, build_dag
from leoflow.dags.errors import DagFileError
from leoflow.dags.yamlfile import YamlFileError, read_yaml
from leoflow.domain.dag import DAG

YAML_SUFFIXES = (".yaml", ".yml")
PY_SUFFIX = ".py"
IGNORE_FILE = ".leoflowignore"
MAX_SOURCE_BYTES = 1024 * 1024  # a DAG file larger than this is refused, not stored in chunks forever


@dataclass(frozen=True)
class PythonLimits:
    timeout: float = 30.0
    memory_mb: int = 512


@dataclass(frozen=True)
class ParsedFile:
    fileloc: str  # relative to the bundle root, '/' separated
    source: str
    dags: tuple[DAG, ...] = ()
    errors: tuple[DagFileError, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors


def issues_to_errors(fileloc: str, issues: list[Issue]) -> tuple[DagFileError, ...]:
    return tuple(DagFileError(fileloc, i.line, i.column, i.message) for i in issues)


def parse_yaml_text(fileloc: str, text: str) -> ParsedFile:
    try:
        root = read_yaml(text)
    except YamlFileError as exc:
        return ParsedFile(fileloc, text, errors=(DagFileError(fileloc, exc.line, exc.column, str(exc)),))
    dag, issues = build_dag(root, fileloc)
    if dag is None:
        return ParsedFile(fileloc, text, errors=issues_to_errors(fileloc, issues))
    return ParsedFile(fileloc, text, dags=(dag,))


def is_python_dag_source(text: str) -> bool:
    """Airflow's "safe mode" heuristic: only files that mention the SDK and a DAG are evaluated."""
    return "leoflow" in text and "DAG" in text


def read_source(path: Path, fileloc: str) -> tuple[str | None, DagFileError | None]:
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            return None, DagFileError(fileloc, 1, 1, f"file is {size} bytes; DAG files are limited to "
                                                     f"{MAX_SOURCE_BYTES} bytes")
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return None, DagFileError(fileloc, 1, 1, f"file is not UTF-8 text: {exc.reason} at byte {exc.start}")
    except OSError as exc:
        return None, DagFileError(fileloc, 1, 1, f"cannot read file: {exc.strerror}")


def load_file(root: Path, fileloc: str, limits: PythonLimits | None = None) -> ParsedFile:
    """Parse one DAG file of the bundle at ``root``; Python files run in the sandboxed subprocess."""
    text, error = read_source(root / fileloc, fileloc)
    if text is None:
        assert error is not None
        return ParsedFile(fileloc, "", errors=(error,))
    if fileloc.endswith(PY_SUFFIX):
        from leoflow.dags.pyloader import parse_python_file

        return parse_python_file(root, fileloc, text, limits or PythonLimits())
    return parse_yaml_text(fileloc, text)


@dataclass(frozen=True)
class IgnoreRules:
    """``.leoflowignore``: one glob per line (``#`` comments); a pattern matches a file or any parent dir."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def read(cls, root: Path) -> IgnoreRules:
        try:
            lines = (root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return cls()
        return cls(tuple(line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")))

    def ignored(self, fileloc: str) -> bool:
        parts = fileloc.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(parts[i], pat)
                   for pat in self.patterns for i, p in enumerate(prefixes))


def is_candidate(fileloc: str, rules: IgnoreRules) -> bool:
    """Would this path be loaded (before looking at its content)? Hidden paths never are."""
    parts = fileloc.split("/")
    if any(p.startswith(".") or p == "__pycache__" for p in parts):
        return False
    if not fileloc.endswith((*YAML_SUFFIXES, PY_SUFFIX)):
        return False
    return not rules.ignored(fileloc)


def discover(root: Path) -> Iterator[str]:
    """Relative paths of candidate DAG files under ``root``, sorted, skipping hidden dirs and ignored ones."""
    rules = IgnoreRules.read(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            fileloc = name if rel_dir == "." else f"{rel_dir}/{name}"
            if is_candidate(fileloc, rules):
                found.append(fileloc)
    return iter(sorted(found))


def load_directory(root: Path, limits: PythonLimits | None = None) -> list[ParsedFile]:
    """Parse every DAG file of a directory; Python files that are not DAG files are skipped."""
    results = []
    for fileloc in discover(root):
        if fileloc.endswith(PY_SUFFIX):
            text, _ = read_source(root / fileloc, fileloc)
            if text is not None and not is_python_dag_source(text):
                continue
        results.append(load_file(root, fileloc, limits))
    return with_duplicate_check(results)


def with_duplicate_check(results: list[ParsedFile]) -> list[ParsedFile]:
    """A dag_id defined in two files: the first file (by path) keeps it, the other gets an error."""
    owner: dict[str, str] = {}
    checked: list[ParsedFile] = []
    for parsed in sorted(results, key=lambda p: p.fileloc):
        errors = []
        for dag in parsed.dags:
            first = owner.setdefault(dag.dag_id, parsed.fileloc)
            if first != parsed.fileloc:
                message = f"dag_id '{dag.dag_id}' is already defined in {first}"
                errors.append(DagFileError(parsed.fileloc, 1, 1, message))
        if errors:
            parsed = ParsedFile(parsed.fileloc, parsed.source, errors=tuple(errors))
        checked.append(parsed)
    return checked
