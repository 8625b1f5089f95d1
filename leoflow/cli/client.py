"""The CLI's client of the public API: where the server is, which token to send, and what a failure
means for the person at the terminal.

Every server-backed command goes through ``ApiClient``, so every failure ends as one
``CliError`` line: the problem document's ``detail`` for API errors, and for an unreachable
server or a rejected token a sentence that says how to fix it. Nothing here prints a traceback.

Settings are resolved flag > environment > the user's CLI file (``leoflow login`` writes it):

* server: ``--server``, ``LEOFLOW_SERVER``, ``server`` in the CLI file, ``http://127.0.0.1:8080``;
* token: ``--token``, ``LEOFLOW_TOKEN``, the token the CLI file keeps *for that server*.

Tokens are stored per server URL so a token is never sent to a server it was not issued by.
The CLI file (``$LEOFLOW_CLI_CONFIG`` or ``$XDG_CONFIG_HOME/leoflow/cli.toml``) is written with
mode 0600 because it holds bearer tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from leoflow.cli.errors import CliError

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0
PAGE = 100

EXIT_CODES_EPILOG = (
    "exit codes: 0 ok; 1 failure (the server refused, a run failed, not found, unreachable server); "
    "2 usage error (bad flags or arguments, bad --conf JSON)."
)


def cli_file() -> Path:
    explicit = os.environ.get("LEOFLOW_CLI_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "leoflow" / "cli.toml"


def read_cli_file(path: Path | None = None) -> dict[str, Any]:
    path = path or cli_file()
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"CLI config {path}: {exc}") from exc


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes (ensure_ascii emits \uXXXX).
    return json.dumps(value, ensure_ascii=True)


def write_cli_file(data: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write ``{"server": str, "tokens": {url: token}}`` atomically, readable by the owner only."""
    path = path or cli_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# written by `leoflow login`; holds bearer tokens: keep it private (mode 0600)"]
    if data.get("server"):
        lines.append(f"server = {_toml_str(str(data['server']))}")
    tokens = data.get("tokens") or {}
    if tokens:
        lines.append("")
        lines.append("[tokens]")
        lines += [f"{_toml_str(str(k))} = {_toml_str(str(v))}" for k, v in sorted(tokens.items())]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask must not widen it, nor an old file's mode survive
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)
    tmp.replace(path)
    return path


def normalize_server(raw: str, what: str = "--server") -> str:
    text = raw.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"{what} {raw!r}: expected a URL such as http://127.0.0.1:8080", exit_code=2)
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise CliError(f"{what} {raw!r}: {exc}", exit_code=2) from exc
    return text


@dataclass(frozen=True)
class Settings:
    server: str
    token: str | None
    timeout: float
    server_from: str
    token_from: str


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    stored = read_cli_file()
    if getattr(args, "server", None):
        server, server_from = normalize_server(args.server), "--server"
    elif env.get("LEOFLOW_SERVER"):
        server, server_from = normalize_server(env["LEOFLOW_SERVER"], "LEOFLOW_SERVER"), "LEOFLOW_SERVER"
    elif stored.get("server"):
        server, server_from = normalize_server(str(stored["server"]), f"server in {cli_file()}"), str(cli_file())
    else:
        server, server_from = DEFAULT_SERVER, "default"
    if getattr(args, "token", None):
        token, token_from = args.token, "--token"
    elif env.get("LEOFLOW_TOKEN"):
        token, token_from = env["LEOFLOW_TOKEN"], "LEOFLOW_TOKEN"
    else:
        found = (stored.get("tokens") or {}).get(server)
        token, token_from = (str(found), str(cli_file())) if found else (None, "none")
    timeout = getattr(args, "timeout", None) or DEFAULT_TIMEOUT
    return Settings(server, token, float(timeout), server_from, token_from)


def add_server_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--server", metavar="URL",
                       help=f"API server (default: $LEOFLOW_SERVER, the CLI config, {DEFAULT_SERVER})")
    group.add_argument("--token", metavar="TOKEN",
                       help="bearer token (default: $LEOFLOW_TOKEN, or the one `leoflow login` stored)")
    group.add_argument("--timeout", type=float, metavar="SECONDS", help=f"HTTP timeout (default {DEFAULT_TIMEOUT:g})")


def api_parent(output: bool = True) -> argparse.ArgumentParser:
    """Flags every server-backed leaf command takes (argparse ``parents=``)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_server_args(parent)
    if output:
        add_output_arg(parent)
    return parent


def add_output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", choices=("table", "json", "yaml"), default="table",
                        help="output format (default: table)")


def seg(value: object) -> str:
    """One path segment: ids may hold ``/``, ``~`` or spaces."""
    return quote(str(value), safe="")


def _detail(resp: requests.Response) -> tuple[str, str]:
    """(detail, problem type) of an error answer, whatever shape it has."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip().splitlines()
        return (text[0][:300] if text else resp.reason or ""), ""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI-style validation list
            detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        if not detail:
            detail = body.get("title") or json.dumps(body)
        return str(detail), str(body.get("type") or "")
    return str(body), ""


class ApiClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = settings.server
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "leoflow-cli"
        if settings.token:
            self.session.headers["Authorization"] = f"Bearer {settings.token}"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ApiClient:
        return cls(resolve(args))

    def close(self) -> None:
        self.session.close()

    # -- transport ------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: Any = None, json_body: Any = None,
                headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = ()) -> requests.Response:
        url = self.server + path
        try:
            resp = self.session.request(method, url, params=params, json=json_body, headers=dict(headers or {}),
                                        timeout=self.settings.timeout)
        except requests.exceptions.ConnectionError as exc:
            raise CliError(self._unreachable(exc)) from None
        except requests.exceptions.Timeout:
            raise CliError(f"{self.server} did not answer within {self.settings.timeout:g}s "
                           f"({method} {path}); raise --timeout or check the server") from None
        except requests.exceptions.RequestException as exc:
            raise CliError(f"request to {self.server} failed: {exc}") from None
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise CliError(self._error_line(resp))
        return resp

    def _unreachable(self, exc: Exception) -> str:
        text = str(exc).lower()
        if "refused" in text:
            why = "connection refused"
        elif "name or service not known" in text or "nodename nor servname" in text or "resolve" in text:
            why = "host name not found"
        elif "timed out" in text:
            why = "connection timed out"
        else:
            why = "connection failed"
        return (f"cannot reach {self.server}: {why} — is `leoflow standalone` (or leoflow-server) running? "
                f"set --server or LEOFLOW_SERVER (now from {self.settings.server_from})")

    def _error_line(self, resp: requests.Response) -> str:
        detail, kind = _detail(resp)
        status = resp.status_code
        if status == 401 or (status == 403 and ("token" in kind or "token" in detail.lower())):
            if not self.settings.token:
                return (f"not logged in to {self.server} ({detail}) — run `leoflow login --server {self.server}` "
                        "or set --token / LEOFLOW_TOKEN")
            return (f"{self.server} rejected the token from {self.settings.token_from}: {detail} — it may have "
                    f"expired; run `leoflow login --server {self.server}` or set --token / LEOFLOW_TOKEN")
        if status == 403:
            return f"forbidden: {detail} (your role does not allow this)"
        if status >= 500:
            return f"server error (HTTP {status}): {detail}"
        return detail

    # -- verbs ----------------------------------------------------------------------------
    def get(self, path: str, params: Any = None) -> Any:
        return self._json(self.request("GET", path, params=params))

    def post(self, path: str, body: Any = None, params: Any = None) -> Any:
        return self._json(self.request("POST", path, json_body=body, params=params))

    def patch(self, path: str, body: Any = None, params: Any = None) -> Any:
        return self._json(self.request("PATCH", path, json_body=body, params=params))

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def exists(self, path: str) -> bool:
        return self.request("GET", path, ok=(404,)).status_code != 404

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise CliError(f"the server answered HTTP {resp.status_code} with a body that is not JSON "
                           f"({resp.headers.get('Content-Type', 'no content type')}); is --server an API server?"
                           ) from None

    def paginate(self, path: str, key: str, params: Mapping[str, Any] | None = None,
                 limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every item of an offset-paged collection (``total_entries``), up to ``limit``."""
        offset = 0
        seen = 0
        while True:
            page = PAGE if limit is None else min(PAGE, limit - seen)
            if page <= 0:
                return
            body = self.get(path, params={**(params or {}), "limit": page, "offset": offset})
            items = body.get(key) or []
            yield from items
            seen += len(items)
            offset += len(items)
            total = body.get("total_entries")
            if not items or (total is not None and offset >= int(total)):
                return
