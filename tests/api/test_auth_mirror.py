"""Authentication from memory (ADR 0059): users, revoked tokens and favorites are mirrored in the
API server, and a verified token's signature is not checked again, so an authenticated request
costs no store request; yet a change made by another process (the CLI deleting a user, another
server replica revoking a token) takes effect within one watch round."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leoflow.api.auth import tokens as tokens_module
from leoflow.api.auth.tokens import TokenExpired, TokenInvalid, TokenService
from leoflow.store.repos import Repositories
from leoflow.store.sqlite import SqliteStore
from tests.api.conftest import ApiHarness

BOUND = 5.0  # seconds: far above one watch round (50 ms here), far below a hung test


def eventually(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {BOUND} s"
        time.sleep(0.02)


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Repositories]:
    """Another process's view of the same store (the CLI, another replica): no mirrors of its own."""
    store = SqliteStore(tmp_path / "store.db")
    try:
        yield Repositories.open(store)
    finally:
        store.close()


def bearer(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def test_an_authenticated_list_request_makes_no_store_call(api: ApiHarness) -> None:
    api.seed_dag("etl")
    client = api.client("viewer")
    client.simulate_get("/api/v2/dags")  # first use: the signature is checked once
    api.spans.clear()
    resp = client.simulate_get("/api/v2/dags", headers={"X-Request-ID": "no-store"})
    assert resp.status_code == 200 and resp.json["dags"][0]["dag_id"] == "etl"
    spans = api.spans.get_finished_spans()
    request = next(s for s in spans if s.attributes.get("leoflow.request_id") == "no-store")
    store_spans = [s for s in spans if s.name.startswith("store.") and s.context.trace_id == request.context.trace_id]
    assert store_spans == []


def test_a_token_revoked_by_another_process_is_refused_within_a_round(api: ApiHarness,
                                                                      other: Repositories) -> None:
    token = api.token("op")
    assert api.anon.simulate_get("/api/v2/dags", **bearer(token)).status_code == 200
    claims = api.ctx.tokens.verify(token)
    other.tokens.revoke(claims.jti, claims.expires_at)

    def refused() -> bool:
        resp = api.anon.simulate_get("/api/v2/dags", **bearer(token))
        return resp.status_code == 403 and resp.json["detail"] == "Invalid JWT token"

    eventually("revocation seen", refused)
    assert api.anon.simulate_get("/api/v2/dags", **bearer(api.token("viewer"))).status_code == 200


def test_user_changes_by_another_process_take_effect(api: ApiHarness, other: Repositories) -> None:
    api.seed_dag("etl")
    token = api.token("user")
    patch = {"json": {"is_paused": True}, **bearer(token)}
    assert api.anon.simulate_patch("/api/v2/dags/etl", **patch).status_code == 200
    old = other.users.require("user-user")
    other.users.update(old, dataclasses.replace(old.record, role="viewer"))  # as `leoflow users` would

    eventually("role lowered", lambda: api.anon.simulate_patch("/api/v2/dags/etl", **patch).status_code == 403)
    assert api.anon.simulate_get("/api/v2/dags/etl", **bearer(token)).status_code == 200  # still a viewer
    other.users.delete("user-user")
    eventually("user deleted",
               lambda: api.anon.simulate_get("/api/v2/dags/etl", **bearer(token)).json.get("detail")
               == "Invalid JWT token")


def test_favorites_from_this_process_show_at_once_and_from_another_within_a_round(
        api: ApiHarness, other: Repositories) -> None:
    for dag in ("a", "b"):
        api.seed_dag(dag)
    client = api.client("viewer")

    def starred() -> dict[str, bool]:
        rows = client.simulate_get("/ui/dags").json["dags"]
        return {row["dag_id"]: row["is_favorite"] for row in rows}

    assert starred() == {"a": False, "b": False}
    assert client.simulate_post("/api/v2/dags/a/favorite").status_code == 204
    assert starred() == {"a": True, "b": False}  # no wait: this process's own write
    other.favorites.add("viewer-user", "b")
    eventually("another process's star", lambda: starred() == {"a": True, "b": True})
    api.repos.dags.delete("a")  # deleting a DAG forgets its stars, in the mirror too
    assert api.repos.favorites.for_user("viewer-user") == {"b"}


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_a_cached_verification_still_checks_expiry_and_never_trusts_other_bytes() -> None:
    clock = Clock()
    service = TokenService(b"k" * 32, expiry_seconds=60, clock=clock)
    token = service.issue("ann", "viewer")
    first = service.verify(token)
    assert service.verify(token) is first  # the second check skips the signature, not the times
    with pytest.raises(TokenInvalid):
        service.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))  # other bytes: checked
    clock.now = NOW + timedelta(seconds=61)
    with pytest.raises(TokenExpired):
        service.verify(token)
    other_key = TokenService(b"j" * 32, expiry_seconds=60, clock=clock)
    with pytest.raises(TokenInvalid):
        other_key.verify(service.issue("ann", "viewer"))


def test_the_verification_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_CACHE_SIZE", 3)
    service = TokenService(b"k" * 32, expiry_seconds=60, clock=Clock())
    issued = [service.issue(f"user{i}", "viewer") for i in range(5)]
    for token in issued:
        service.verify(token)
    assert list(service._verified) == issued[-3:]  # the oldest went first
    assert service.verify(issued[0]).username == "user0"  # evicted: verified again, in full
