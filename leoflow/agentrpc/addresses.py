"""Address rules shared by both ends of the agent link (kept tiny so the agent imports no server code)."""

from __future__ import annotations

import ipaddress


def is_loopback(address: str) -> bool:
    """True for ``127.x``/``::1``/``localhost`` binds and targets: the only place plaintext gRPC is allowed."""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
