"""Connections, variables, pools (with derived slot usage), users, revoked tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from leoflow.domain.records import Connection, Pool, TaskInstance, User, Variable
from leoflow.domain.states import TaskInstanceState as S
from leoflow.store.repos import AlreadyExists, Conflict, NotFound, Repositories
from leoflow.store.repos.pools import slot_usage
from tests.store.repos.conftest import T0, make_run


def test_connection_crud_with_cas(repos: Repositories) -> None:
    c = Connection("my db/prod", "postgres", host="db", password="s3cret", port=5432)
    v = repos.connections.create(c)
    assert repos.connections.require("my db/prod").record == c
    with pytest.raises(AlreadyExists, match="connection 'my db/prod' already exists"):
        repos.connections.create(c)
    v2 = repos.connections.update(v, replace(c, host="db2"))
    with pytest.raises(Conflict, match="changed by someone else"):
        repos.connections.update(v, replace(c, host="db3"))
    assert repos.connections.require("my db/prod").record.host == "db2" and v2.index > v.index
    with pytest.raises(ValueError, match="is not"):
        repos.connections.update(v2, replace(c, connection_id="other"))
    assert repos.connections.delete("my db/prod") is True
    assert repos.connections.delete("my db/prod") is False
    with pytest.raises(NotFound, match="connection 'my db/prod' does not exist"):
        repos.connections.require("my db/prod")


def test_variables_list_order_and_page(srepos: Repositories) -> None:
    for k in ("b", "a", "c"):
        srepos.variables.upsert(Variable(k, f"value-{k}", description=None if k == "c" else k))
    srepos.variables.upsert(Variable("a", "new"))
    assert [v.record.key for v in srepos.variables.all()] == ["a", "b", "c"]
    page = srepos.variables.list(order_by="-key", limit=2, offset=0)
    assert [v.record.key for v in page.items] == ["c", "b"] and page.total_entries == 3
    assert srepos.variables.require("a").record.value == "new"
    filtered = srepos.variables.list(where=lambda v: v.value.startswith("value"))
    assert filtered.total_entries == 2
    assert [v.record.key for v in srepos.variables.list(order_by="id").items] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="cannot order variables by 'nope'"):
        srepos.variables.list(order_by="nope")


def test_users_store_the_hash_string(srepos: Repositories) -> None:
    u = User("alice", "scrypt$16384$8$1$c2FsdA==$aGFzaA==", "admin", created_at=T0)
    srepos.users.create(u)
    srepos.users.set_password_hash("alice", "scrypt$new")
    assert srepos.users.require("alice").record.password_hash == "scrypt$new"
    assert srepos.users.require("alice").record.created_at == T0
    with pytest.raises(NotFound):
        srepos.users.set_password_hash("bob", "x")


def test_pools_default_and_slot_usage_from_ti_states(repos: Repositories) -> None:
    default = repos.pools.ensure_default()
    assert default.record.slots == 128 and repos.pools.ensure_default().index == default.index
    repos.pools.create(Pool("small", 2, include_deferred=True))
    run = make_run()
    states = [S.RUNNING, S.QUEUED, S.SCHEDULED, S.DEFERRED, S.SUCCESS, None]
    tis = [TaskInstance("etl", run.run_id, f"t{i}", state=s, pool="small", pool_slots=1) for i, s in enumerate(states)]
    tis.append(TaskInstance("etl", run.run_id, "big", state=S.RUNNING, pool_slots=3))
    repos.runs.create(run, tis)
    usage = repos.pool_slots()
    small = usage["small"]
    assert (small.running, small.queued, small.scheduled, small.deferred, small.occupied) == (1, 1, 1, 1, 3)
    assert small.open_slots == -1  # include_deferred: over-committed after a shrink
    assert usage["default_pool"].running == 3 and usage["default_pool"].open_slots == 125
    plain = slot_usage([Pool("p", 5)], [TaskInstance("d", "r", "t", state=S.DEFERRED, pool="p")])
    assert plain["p"].occupied == 0 and plain["p"].open_slots == 5


def test_revoked_tokens_expire(srepos: Repositories) -> None:
    srepos.tokens.revoke("jti-1", T0 + timedelta(hours=1))
    srepos.tokens.revoke("jti-1", T0 + timedelta(hours=1))
    srepos.tokens.revoke("jti-2", T0 + timedelta(hours=3))
    assert srepos.tokens.is_revoked("jti-1") and not srepos.tokens.is_revoked("other")
    assert srepos.tokens.purge_expired(T0 + timedelta(hours=2), dry_run=True)[0] == 1
    assert srepos.tokens.is_revoked("jti-1")
    assert srepos.tokens.purge_expired(T0 + timedelta(hours=2))[0] == 1
    assert not srepos.tokens.is_revoked("jti-1") and srepos.tokens.is_revoked("jti-2")


def test_ping_and_dags_repository_are_exposed(srepos: Repositories) -> None:
    srepos.ping()
    assert srepos.dags.list() == []


def test_favorites_per_user(repos: Repositories) -> None:
    repos.favorites.add("alice", "etl.daily")
    repos.favorites.add("alice", "b")
    repos.favorites.add("alice", "b")
    repos.favorites.add("bob", "c")
    assert repos.favorites.for_user("alice") == {"etl.daily", "b"}
    assert repos.favorites.remove("alice", "b") is True and repos.favorites.remove("alice", "b") is False
    assert repos.favorites.for_user("alice") == {"etl.daily"} and repos.favorites.for_user("nobody") == set()


def test_leader_is_the_held_leader_lock(srepos: Repositories) -> None:
    assert srepos.leader() is None
    session = srepos.store.session_create(name="sched", ttl=10.0, lock_delay=0.0)
    assert srepos.store.put("lf/scheduler/leader", b'{"id": "s1", "host": "h", "pid": 1}', acquire=session)
    assert srepos.leader().host == "h"  # type: ignore[union-attr]
    srepos.store.session_destroy(session)
    assert srepos.leader() is None
