from __future__ import annotations

from pathlib import Path

import pytest

from leoflow import config


def test_file_then_env_overlay(tmp_path: Path) -> None:
    path = tmp_path / "leoflow.toml"
    path.write_text('[store]\nbackend = "consul"\nconsul_timeout = 3\n[server]\nworkers = 4\n')
    cfg = config.load(path, env={"LEOFLOW_SERVER__WORKERS": "8", "LEOFLOW_SERVER__ACCESS_LOG": "false"})
    assert cfg.store.backend == "consul"
    assert cfg.store.consul_timeout == 3.0
    assert cfg.server.workers == 8
    assert cfg.server.access_log is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[store]\nbackend2 = "x"\n', "unknown config key store.backend2"),
        ("[nope]\na = 1\n", "unknown config key nope"),
        ('[server]\nworkers = "many"\n', "config key server.workers: expected int"),
        ("[server\n", "leoflow.toml"),
        ('[store]\nbackend = "etcd"\n', "config key store.backend: 'etcd' is not one of sqlite, consul"),
        ('[ui]\ntest_connection = "yes"\n', "config key ui.test_connection: 'yes' is not one of"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "leoflow.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message.replace(".", r"\.")):
        config.load(path, env={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.toml", env={})


def test_known_keys_lists_every_section_key() -> None:
    keys = config.known_keys()
    assert {"store.backend", "nomad.addr", "vault.addr", "server.bind", "home"} <= keys
