"""What a user sees when things go wrong: one clear line on stderr, the documented exit code, never
a traceback."""

from __future__ import annotations

import socket

from tests.cli.conftest import Cli, run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_clean_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unreachable_server_says_so_and_how_to_fix_it(cli: Cli) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    r = cli("dags", "list", "--server", url)
    assert r.code == 1, r
    line = _one_clean_line(r.err)
    assert f"cannot reach {url}: connection refused" in line
    assert "leoflow standalone" in line and "LEOFLOW_SERVER" in line


def test_unreachable_server_from_the_environment(cli: Cli) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    r = cli("runs", "list", LEOFLOW_SERVER=url)
    assert r.code == 1, r
    assert "(now from LEOFLOW_SERVER)" in _one_clean_line(r.err)


def test_bad_token_is_named_with_the_fix(cli: Cli) -> None:
    r = cli("dags", "list", LEOFLOW_TOKEN="not-a-jwt")
    assert r.code == 1, r
    line = _one_clean_line(r.err)
    assert "rejected the token from LEOFLOW_TOKEN" in line and "leoflow login" in line


def test_no_token_says_not_logged_in(cli: Cli) -> None:
    env = cli.env()
    env.pop("LEOFLOW_TOKEN")
    r = run_cli("dags", "list", env=env)
    assert r.code == 1, r
    line = _one_clean_line(r.err)
    assert f"not logged in to {cli.server}" in line and "leoflow login" in line


def test_unknown_dag_shows_the_problem_detail(cli: Cli) -> None:
    for argv in (("dags", "show", "no_such_dag"), ("dags", "trigger", "no_such_dag"), ("runs", "list", "no_such_dag"),
                 ("dags", "pause", "no_such_dag")):
        r = cli(*argv)
        assert r.code == 1, (argv, r)
        assert "no_such_dag" in _one_clean_line(r.err) and "not found" in r.err, (argv, r)


def test_bad_conf_json_is_a_usage_error(cli: Cli) -> None:
    r = cli("dags", "trigger", "cli_ok", "--conf", "{not json")
    assert r.code == 2, r
    assert "--conf is not valid JSON" in _one_clean_line(r.err)
    r = cli("dags", "trigger", "cli_ok", "--conf", "[1, 2]")
    assert r.code == 2 and "must be a JSON object" in r.err, r


def test_conf_against_params_is_refused_by_the_server(cli: Cli) -> None:
    r = cli("dags", "trigger", "cli_ok", "--conf", '{"who": 5}')
    assert r.code == 1, r
    assert "who" in _one_clean_line(r.err)


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("dags", "trigger").code == 2
    assert cli("runs", "mark", "d", "r", "bogus").code == 2
    r = cli("dags", "trigger", "cli_ok", "--logical-date", "yesterday")
    assert r.code == 2 and "--logical-date 'yesterday'" in r.err, r
    r = cli("dags", "list", "--server", "ftp://x")
    assert r.code == 2 and "expected a URL" in r.err, r


def test_exit_codes_are_documented_in_help(cli: Cli) -> None:
    for argv in (("dags", "--help"), ("dags", "trigger", "--help"), ("runs", "list", "--help"),
                 ("connections", "import", "--help")):
        r = cli(*argv)
        assert r.code == 0, r
        assert "exit codes: 0 ok; 1 failure" in r.out and "2 usage error" in r.out, argv


def test_login_stores_a_private_token_and_logout_forgets_it(cli: Cli) -> None:
    from tests.cli.conftest import PASSWORD

    cfg = cli.tmp / "login-cli.toml"
    env = cli.env(LEOFLOW_CLI_CONFIG=str(cfg))
    env.pop("LEOFLOW_TOKEN")
    env.pop("LEOFLOW_SERVER")
    r = run_cli("login", "--server", cli.server, "-u", "admin", "--password-stdin", env=env, stdin="wrong-password\n")
    assert r.code == 1 and "invalid username or password" in r.err and not cfg.exists(), r
    r = run_cli("login", "--server", cli.server, "-u", "admin", "--password-stdin", env=env, stdin=PASSWORD + "\n")
    assert r.code == 0 and "logged in" in r.out, r
    assert cfg.stat().st_mode & 0o777 == 0o600
    assert PASSWORD not in cfg.read_text()
    # The stored server and token are used with no flags at all.
    r = run_cli("dags", "list", "-o", "json", env=env)
    assert r.code == 0 and "cli_ok" in r.out, r
    # The token is kept for its own server only: another server gets no token.
    other = f"http://127.0.0.1:{_closed_port()}"
    r = run_cli("config", "show", "--section", "cli", "--server", other, "-o", "json", env=env)
    assert '"token": "not set"' in r.out, r
    r = run_cli("logout", env=env)
    assert r.code == 0 and "forgot" in r.out, r
    r = run_cli("dags", "list", env=env)
    assert r.code == 1 and "not logged in" in r.err, r
