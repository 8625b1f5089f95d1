"""The pinned UI bundle: real `pip download` against a local index, hash pinning, install layout."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from leoflow.ui import bundle
from tests.fakes.pypi import serve_index


def cached_wheel() -> Path:
    """The real wheel fetched by `make setup` / `leoflow ui install` into $LEOFLOW_CACHE."""
    path = bundle.wheel_path()
    if not path.is_file():
        pytest.fail(f"{path} missing: run `make setup` (or `LEOFLOW_CACHE=... leoflow ui install`) first")
    return path


def _offline_pip_env(monkeypatch: pytest.MonkeyPatch, index_url: str) -> None:
    # Ignore the machine's pip.conf / find-links so pip sees only the index under test.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index_url)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_index(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    files = tmp_path / "index-files"
    files.mkdir()
    with serve_index(files) as url:
        yield url, files


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wrong_wheel(dest: Path) -> Path:
    """A well-formed wheel with the pinned name and version but other content (a tampered upload)."""
    path = dest / bundle.WHEEL_NAME
    info = f"apache_airflow_core-{bundle.AIRFLOW_VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{info}/METADATA",
                    f"Metadata-Version: 2.1\nName: apache-airflow-core\nVersion: {bundle.AIRFLOW_VERSION}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
        zf.writestr("airflow/ui/dist/index.html", "<html>evil</html>")
    return path


def test_pinned_hash_matches_the_cached_wheel() -> None:
    assert bundle.sha256_of(cached_wheel()) == bundle.WHEEL_SHA256


def test_fetch_downloads_with_pip_and_verifies(fake_index: tuple[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, files = fake_index
    shutil.copy(cached_wheel(), files / bundle.WHEEL_NAME)
    _offline_pip_env(monkeypatch, url)
    cache = tmp_path / "cache"
    messages: list[str] = []
    got = bundle.fetch(cache, progress=messages.append)
    assert got == cache / bundle.WHEEL_NAME
    assert bundle.sha256_of(got) == bundle.WHEEL_SHA256
    assert any("downloading apache-airflow-core==3.3.2" in m for m in messages)
    assert any("verified" in m for m in messages)
    # No temp download dirs are left behind.
    assert sorted(p.name for p in cache.iterdir()) == [bundle.WHEEL_NAME]


def test_hash_mismatch_is_refused_and_nothing_is_cached(fake_index: tuple[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url, files = fake_index
    bad = _wrong_wheel(files)
    _offline_pip_env(monkeypatch, url)
    cache = tmp_path / "cache"
    with pytest.raises(bundle.BundleError) as err:
        bundle.fetch(cache)
    msg = str(err.value)
    assert "sha256 mismatch" in msg
    assert hashlib.sha256(bad.read_bytes()).hexdigest() in msg
    assert not (cache / bundle.WHEEL_NAME).exists()
    assert list(cache.iterdir()) == []


def test_unreachable_index_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline_pip_env(monkeypatch, f"http://127.0.0.1:{_closed_port()}/simple")
    with pytest.raises(bundle.BundleError) as err:
        bundle.fetch(tmp_path / "cache")
    msg = str(err.value)
    assert "could not download apache-airflow-core==3.3.2" in msg
    assert "unreachable" in msg
    assert bundle.WHEEL_SHA256 in msg  # tells the operator how to provide the file by hand


def test_corrupt_cached_wheel_is_fetched_again(fake_index: tuple[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, files = fake_index
    shutil.copy(cached_wheel(), files / bundle.WHEEL_NAME)
    _offline_pip_env(monkeypatch, url)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / bundle.WHEEL_NAME).write_bytes(b"truncated")
    messages: list[str] = []
    got = bundle.fetch(cache, progress=messages.append)
    assert bundle.sha256_of(got) == bundle.WHEEL_SHA256
    assert any("wrong sha256" in m for m in messages)


def test_install_extracts_ui_and_login_app_and_is_idempotent(tmp_path: Path) -> None:
    cached_wheel()
    home = tmp_path / "home"
    assert not bundle.is_installed(home)
    with pytest.raises(bundle.BundleError, match="leoflow ui install"):
        bundle.require_installed(home)
    root = bundle.install(home)
    assert root == home / "ui"
    index = (bundle.ui_dist_dir(home) / "index.html").read_text()
    assert "{{ backend_server_base_url }}" in index  # rendered per request, not at install time
    assert (bundle.ui_dist_dir(home) / "assets").is_dir()
    assert any(bundle.ui_dist_dir(home).joinpath("assets").glob("*.wasm"))
    assert (bundle.ui_dist_dir(home) / "i18n" / "locales" / "en" / "common.json").is_file()
    assert "./auth/static/assets/" in (bundle.auth_dist_dir(home) / "index.html").read_text()
    assert bundle.is_installed(home)
    assert bundle.require_installed(home) == root
    marker = (root / "BUNDLE").stat().st_mtime_ns
    messages: list[str] = []
    assert bundle.install(home, progress=messages.append) == root
    assert (root / "BUNDLE").stat().st_mtime_ns == marker
    assert messages == [f"Airflow UI 3.3.2 already installed in {root}"]


def test_reinstall_replaces_a_stale_tree(tmp_path: Path) -> None:
    cached_wheel()
    home = tmp_path / "home"
    stale = home / "ui" / "airflow"
    stale.mkdir(parents=True)
    (stale / "leftover.js").write_text("old")
    bundle.install(home)
    assert not (stale / "leftover.js").exists()
    assert (stale / "index.html").is_file()
    assert [p.name for p in home.iterdir()] == ["ui"]  # no staging or old dirs left


def test_specs_come_from_the_wheel() -> None:
    cached_wheel()
    ui = bundle.load_spec("ui")
    v2 = bundle.load_spec("v2")
    assert ui["info"]["version"] and len(ui["paths"]) == 24
    assert "/ui/grid/ti_summaries/{dag_id}" in ui["paths"]
    assert "/api/v2/dags/{dag_id}/details" in v2["paths"]
    assert bundle.spec_path("_private_ui.yaml") == bundle.spec_path("ui")
    assert bundle.load_spec("simple-auth")["paths"]
    with pytest.raises(KeyError, match="unknown spec"):
        bundle.spec_path("nope")


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leoflow.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_cli_install_and_status(fake_index: tuple[str, Path], tmp_path: Path) -> None:
    url, files = fake_index
    shutil.copy(cached_wheel(), files / bundle.WHEEL_NAME)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=url, LEOFLOW_HOME=str(tmp_path / "home"),
               LEOFLOW_CACHE=str(tmp_path / "cache"))
    st = _run_cli(["ui", "status"], env)
    assert st.returncode == 1 and "leoflow ui install" in st.stderr
    first = _run_cli(["ui", "install"], env)
    assert first.returncode == 0, first.stderr
    assert "downloading apache-airflow-core==3.3.2" in first.stderr
    assert "installed Airflow UI 3.3.2" in first.stderr
    assert first.stdout.strip() == str(tmp_path / "home" / "ui")
    again = _run_cli(["ui", "install"], env)
    assert again.returncode == 0 and "already installed" in again.stderr
    assert _run_cli(["ui", "status"], env).returncode == 0


def test_cli_unreachable_index_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=f"http://127.0.0.1:{_closed_port()}/simple",
               LEOFLOW_HOME=str(tmp_path / "home"), LEOFLOW_CACHE=str(tmp_path / "cache"))
    proc = _run_cli(["ui", "install"], env)
    assert proc.returncode == 1
    assert proc.stderr.count("leoflow: error: could not download apache-airflow-core==3.3.2") == 1
    assert "Traceback" not in proc.stderr
