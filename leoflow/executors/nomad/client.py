"""The Nomad HTTP transport: python-nomad's ``Requester`` with the known traps closed.

Why the base ``Requester`` and not ``nomad.Nomad``: the façade reads ``NOMAD_ADDR``,
``NOMAD_TOKEN``, ``NOMAD_REGION``, ``NOMAD_NAMESPACE`` and client-cert variables from the
environment and lets them override what we pass (hashicorp.md §1.2), its helpers drop the
``X-Nomad-Index`` header blocking queries need, and its default is ``verify=False`` with a 5 s
timeout that kills long polls. The ``Requester`` takes every setting explicitly, adds the token
header, namespace and region, and returns the raw ``requests`` response.

Every call is counted per endpoint family (``calls``), so the benchmark can show how many Nomad
API calls a try costs.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from nomad.api import exceptions as nomad_exc
from nomad.api.base import Requester
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from leoflow.config import NomadConfig

ENFORCE_INDEX_ERROR = "Enforcing job modify index"


class NomadError(Exception):
    """Nomad answered with an error status; ``status`` is None when it could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Settings:
    addr: str
    token: str = ""
    namespace: str = "default"
    region: str = ""
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    timeout: float = 15.0
    blocking_wait: float = 60.0

    @classmethod
    def from_config(cls, cfg: NomadConfig) -> Settings:
        token = cfg.token
        if not token and cfg.token_file:
            try:
                token = Path(cfg.token_file).read_text().strip()
            except OSError as exc:
                raise NomadError(f"config key nomad.token_file: cannot read {cfg.token_file}: {exc.strerror}") from exc
        verify: bool | str = (cfg.ca_file or True) if cfg.verify else False
        cert = None
        if cfg.cert_file or cfg.key_file:
            if not (cfg.cert_file and cfg.key_file):
                raise NomadError("config keys nomad.cert_file and nomad.key_file must be set together")
            cert = (cfg.cert_file, cfg.key_file)
        return cls(addr=cfg.addr.rstrip("/"), token=token, namespace=cfg.namespace or "default",
                   region=cfg.region, verify=verify, cert=cert, timeout=cfg.timeout,
                   blocking_wait=cfg.blocking_wait)


class _Raw(Requester):
    """python-nomad's requester for any path (its endpoint classes each fix one family)."""

    def _endpoint_builder(self, *args: str) -> str:
        return f"{self.version}/" + "/".join(a for a in args if a)


class NomadClient:
    """The calls the executor makes. Thread-safe (one ``requests.Session``, counters under a lock)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session = requests.Session()
        # A pooled keep-alive connection the server closed while idle fails on reuse; retrying
        # is safe for every call we make (registering is create-only under EnforceIndex).
        retry = Retry(total=2, connect=2, read=1, status=0, other=0, allowed_methods=None, backoff_factor=0.05,
                      raise_on_status=False)
        self._session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=32))
        self._session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=32))
        self._req = _Raw(
            address=settings.addr, namespace=settings.namespace, token=settings.token or None,
            timeout=settings.timeout, verify=settings.verify, cert=settings.cert or (),
            region=settings.region or None, session=self._session,
        )
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._streams: set[requests.Response] = set()
        self._closed = False

    def close(self) -> None:
        """Also ends open streams, so threads blocked reading them wake up now, not at a heartbeat."""
        with self._lock:
            self._closed = True
            streams = list(self._streams)
        for resp in streams:
            resp.close()
        self._session.close()

    def _track(self, resp: requests.Response, add: bool) -> None:
        with self._lock:
            if add:
                self._streams.add(resp)
            else:
                self._streams.discard(resp)

    # -- plumbing -----------------------------------------------------------------------------
    def _call(self, family: str, *path: str, method: str = "get", params: Mapping[str, Any] | None = None,
              body: Any = None, timeout: float | None = None, stream: bool = False) -> requests.Response:
        with self._lock:
            self.calls[family] += 1
        try:
            return self._req.request(*path, method=method, params=dict(params or {}), json=body,
                                     timeout=timeout or self.settings.timeout, stream=stream)
        except nomad_exc.BaseNomadException as exc:
            resp = getattr(exc, "nomad_resp", None)
            if isinstance(resp, requests.Response):
                raise NomadError(f"Nomad {method.upper()} /v1/{'/'.join(path)}: {resp.status_code} "
                                 f"{resp.text.strip()[:500]}", resp.status_code) from None
            raise NomadError(f"Nomad {method.upper()} /v1/{'/'.join(path)}: unreachable: {resp}") from None

    @staticmethod
    def _index(resp: requests.Response) -> int:
        try:
            return int(resp.headers.get("X-Nomad-Index", "0"))
        except ValueError:
            return 0

    # -- jobs ---------------------------------------------------------------------------------
    def register(self, body: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any]]:
        """POST /v1/jobs; (False, {}) when the job already exists (EnforceIndex 0 refused it)."""
        try:
            resp = self._call("register", "jobs", method="post", body=body)
        except NomadError as exc:
            if ENFORCE_INDEX_ERROR in str(exc):
                return False, {}
            raise
        return True, resp.json()

    def job(self, job_id: str) -> Mapping[str, Any] | None:
        try:
            return self._call("job", "job", job_id).json()
        except NomadError as exc:
            if exc.status == 404:
                return None
            raise

    def jobs(self, prefix: str) -> tuple[list[Mapping[str, Any]], int]:
        resp = self._call("jobs", "jobs", params={"prefix": prefix, "meta": "true"})
        return resp.json() or [], self._index(resp)

    def evaluations(self, job_id: str) -> list[Mapping[str, Any]]:
        return self._call("evaluations", "job", job_id, "evaluations").json() or []

    def deregister(self, job_id: str, *, purge: bool = False) -> None:
        """Stop (and with ``purge`` remove) a job; Nomad answers 200 for an unknown job."""
        params = {"purge": "true"} if purge else {}
        try:
            self._call("purge" if purge else "stop", "job", job_id, method="delete", params=params)
        except NomadError as exc:
            if exc.status != 404:
                raise

    # -- allocations --------------------------------------------------------------------------
    def allocations(self, *, index: int = 0, wait: float | None = None) -> tuple[list[Mapping[str, Any]], int]:
        """GET /v1/allocations (the namespace's allocations), blocking when ``index`` > 0."""
        params: dict[str, Any] = {"task_states": "true"}
        timeout = None
        if index > 0:
            w = wait if wait is not None else self.settings.blocking_wait
            params.update(index=str(index), wait=f"{int(max(1, w))}s")
            timeout = w + w / 16 + self.settings.timeout  # Nomad adds up to wait/16 jitter
        resp = self._call("allocations", "allocations", params=params, timeout=timeout)
        return resp.json() or [], self._index(resp)

    def job_allocations(self, job_id: str) -> list[Mapping[str, Any]]:
        """GET /v1/job/:id/allocations (``[]`` for an unknown job, not 404)."""
        return self._call("allocations", "job", job_id, "allocations").json() or []

    # -- client fs ----------------------------------------------------------------------------
    def cat(self, alloc_id: str, path: str) -> bytes | None:
        """A file of the allocation's directory; None when it does not exist."""
        try:
            return self._call("fs", "client", "fs", "cat", alloc_id, params={"path": path}).content
        except NomadError as exc:
            if exc.status == 404 or (exc.status == 500 and "no such file" in str(exc).lower()):
                return None
            raise

    def logs(self, alloc_id: str, task: str, kind: str, *, offset: int = 0, follow: bool = True,
             read_timeout: float = 45.0) -> Iterator[Mapping[str, Any]]:
        """Framed log stream: yields ``{"File","Offset","Data"}`` frames (Data decoded to bytes).

        Frames are concatenated JSON without a delimiter guarantee, so they are decoded with
        ``raw_decode``; ``{}`` heartbeats are skipped. Ends when Nomad ends the stream (the task is
        dead and everything was sent).
        """
        params = {"task": task, "type": kind, "follow": "true" if follow else "false", "offset": str(offset),
                  "origin": "start", "plain": "false"}
        resp = self._call("logs", "client", "fs", "logs", alloc_id, params=params, stream=True,
                          timeout=read_timeout)
        self._track(resp, True)
        try:
            yield from _json_frames(resp)
        finally:
            self._track(resp, False)

    # -- event stream -------------------------------------------------------------------------
    def event_stream(self, index: int, topics: list[str], *, read_timeout: float = 45.0) -> Iterator[Mapping[str, Any]]:
        """NDJSON ``{"Index","Events"}`` lines from ``index``; ``{}`` heartbeats arrive as ``{}``.

        ``read_timeout`` must exceed Nomad's 30 s heartbeat interval, or a quiet cluster looks dead.
        The namespace is passed explicitly: python-nomad only adds it for some endpoint families.
        """
        params: dict[str, Any] = {"index": str(index), "topic": topics, "namespace": self.settings.namespace}
        resp = self._call("events", "event", "stream", params=params, stream=True, timeout=read_timeout)
        self._track(resp, True)
        try:
            for line in resp.iter_lines(chunk_size=None):
                if not line:
                    continue
                yield json.loads(line)
        except requests.RequestException as exc:
            raise NomadError(f"Nomad event stream broke: {exc}") from None
        except (AttributeError, ValueError) as exc:  # closed under our feet by close()
            raise NomadError(f"Nomad event stream closed: {exc}") from None
        finally:
            self._track(resp, False)
            resp.close()


def _json_frames(resp: requests.Response) -> Iterator[Mapping[str, Any]]:
    import base64

    decoder = json.JSONDecoder()
    buf = ""
    try:
        for chunk in resp.iter_content(chunk_size=None):
            buf += chunk.decode("utf-8", "replace")
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    frame, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # incomplete frame: wait for more bytes
                buf = buf[end:]
                if not frame:
                    continue
                if frame.get("Data"):
                    frame = {**frame, "Data": base64.b64decode(frame["Data"])}
                yield frame
    except requests.RequestException as exc:
        raise NomadError(f"Nomad log stream broke: {exc}") from None
    except (AttributeError, ValueError) as exc:  # closed under our feet by close()
        raise NomadError(f"Nomad log stream closed: {exc}") from None
    finally:
        resp.close()
