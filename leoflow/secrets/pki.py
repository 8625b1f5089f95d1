"""A TLS certificate issued by Vault PKI (``<mount>/issue/<role>``), kept on disk and renewed early.

Used for the optional mutual TLS between agents and agentrpc (adr/0095): the agent's client
certificate (and, if wanted, agentrpc's server certificate) come from Vault, so no long-lived key
material is copied around. The files are what the existing TLS settings already point at
(``[agent] tls_cert_file``/``tls_key_file``/``tls_ca_file``); gRPC reads them at each dial, so a
renewed certificate is used from the next connection on and an open stream is never cut for it.

Renewal is due at ``renew_fraction`` of the certificate's own validity (read from the file, so a
restarted agent knows when its certificate is due without asking Vault).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from cryptography import x509

from leoflow.secrets.login import VaultSession
from leoflow.secrets.vault import VaultError, data, explain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    ca: Path

    @classmethod
    def under(cls, directory: Path) -> CertFiles:
        return cls(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)


def validity(cert_pem: bytes) -> tuple[float, float]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return (cert.not_valid_before_utc.astimezone(UTC).timestamp(),
            cert.not_valid_after_utc.astimezone(UTC).timestamp())


class CertKeeper:
    def __init__(self, session: VaultSession, *, role: str, common_name: str, directory: Path,
                 mount: str = "pki", ttl: str = "72h", ip_sans: str = "", alt_names: str = "",
                 renew_fraction: float = 2 / 3, clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.role = role
        self.common_name = common_name
        self.files = CertFiles.under(directory)
        self.mount = mount
        self.ttl = ttl
        self.ip_sans = ip_sans
        self.alt_names = alt_names
        self.renew_fraction = renew_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self.issued = 0

    def renew_at(self) -> float:
        """When the current certificate is due (0: there is none, or it is unreadable)."""
        try:
            start, end = validity(self.files.cert.read_bytes())
        except (OSError, ValueError):
            return 0.0
        return start + (end - start) * self.renew_fraction

    def ensure(self) -> CertFiles:
        with self._lock:
            if self._clock() >= self.renew_at() or not self.files.key.exists():
                self._issue()
            return self.files

    def _issue(self) -> None:
        params = {"ttl": self.ttl, "format": "pem"}
        if self.ip_sans:
            params["ip_sans"] = self.ip_sans
        if self.alt_names:
            params["alt_names"] = self.alt_names
        what = f"issue a certificate from {self.mount}/issue/{self.role}"
        try:
            answer = self.session.client().secrets.pki.generate_certificate(
                self.role, self.common_name, extra_params=params, mount_point=self.mount)
        except VaultError:
            raise
        except Exception as exc:
            raise explain(exc, what) from exc
        d = data(answer, what)
        cert, key, ca = d.get("certificate"), d.get("private_key"), d.get("issuing_ca")
        if not all(isinstance(x, str) and x for x in (cert, key, ca)):
            raise VaultError(f"{what}: Vault answered without certificate, key or CA")
        chain = [c for c in d.get("ca_chain") or [] if isinstance(c, str) and c != ca]
        # Key first (0600 from the first byte), then the certificate that goes with it.
        _write(self.files.key, str(key), 0o600)
        _write(self.files.cert, "\n".join([str(cert), *chain]), 0o644)
        _write(self.files.ca, str(ca), 0o644)
        self.issued += 1
        log.info("TLS certificate issued by Vault", extra={"role": self.role, "serial": d.get("serial_number"),
                                                          "common_name": self.common_name})

    def keep_fresh(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.ensure()
            except VaultError as exc:
                log.error("could not renew the TLS certificate", extra={"error": str(exc)})
            wait = max(1.0, self.renew_at() - self._clock())
            stop.wait(min(wait, 60.0))
