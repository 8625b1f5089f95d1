"""The Consul adapter's traps (token on txn, env override, string indexes, TLS, dc/namespace,
failures) and the fake's fidelity to Consul's wire behaviour (404 + index, 409/413 bodies, TTL x 2,
lock-delay, spurious wake-ups, an index going backwards)."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests

from leoflow.config import StoreConfig
from leoflow.store.consul import ConsulStore, go_duration
from leoflow.store.port import Set, StoreError, StoreUnavailable
from leoflow.store.watching import RateLimiter, Watcher, next_index
from tests.fakes.consul import FakeConsul, ManualClock, parse_duration
from tests.fakes.tlscerts import make_pki


@pytest.fixture
def fake() -> FakeConsul:
    with FakeConsul(session_ttl_min=0.01) as f:
        yield f


# -- wire behaviour of the fake (what the adapter relies on) ---------------------------------


def test_missing_key_is_404_with_index_header(fake: FakeConsul) -> None:
    requests.put(f"{fake.addr}/v1/kv/a", data=b"1", timeout=5)
    response = requests.get(f"{fake.addr}/v1/kv/missing", timeout=5)
    assert response.status_code == 404
    assert int(response.headers["X-Consul-Index"]) >= 1
    assert requests.get(f"{fake.addr}/v1/kv/nothing/?keys", timeout=5).status_code == 404
    assert requests.get(f"{fake.addr}/v1/kv/?keys", timeout=5).json() == ["a"]


def test_empty_value_is_null_and_bad_keys_are_400(fake: FakeConsul) -> None:
    requests.put(f"{fake.addr}/v1/kv/empty", data=b"", timeout=5)
    assert requests.get(f"{fake.addr}/v1/kv/empty", timeout=5).json()[0]["Value"] is None
    assert requests.put(f"{fake.addr}/v1/kv/a/%2E%2E/b", data=b"1", timeout=5).status_code == 400
    assert requests.put(f"{fake.addr}/v1/kv/conf.json", data=b"1", timeout=5).status_code == 400
    assert requests.put(f"{fake.addr}/v1/kv/x?cas=0&acquire=s", data=b"1", timeout=5).status_code == 400


def test_txn_409_names_failing_op_and_413_over_limits(fake: FakeConsul) -> None:
    ops = [{"KV": {"Verb": "set", "Key": "a", "Value": base64.b64encode(b"1").decode()}},
           {"KV": {"Verb": "check-index", "Key": "missing", "Index": 3}}]
    response = requests.put(f"{fake.addr}/v1/txn", data=json.dumps(ops), timeout=5)
    assert response.status_code == 409
    body = response.json()
    assert body["Results"] is None and body["Errors"][0]["OpIndex"] == 1
    assert "doesn't exist" in body["Errors"][0]["What"]
    too_many = [{"KV": {"Verb": "set", "Key": f"k{i}"}} for i in range(65)]
    response = requests.put(f"{fake.addr}/v1/txn", data=json.dumps(too_many), timeout=5)
    assert response.status_code == 413 and "too many operations (65 > 64)" in response.text
    big = [{"kv": {"verb": "set", "key": "big", "value": base64.b64encode(b"x" * 400_000).decode()}}]
    assert requests.put(f"{fake.addr}/v1/txn", data=json.dumps(big), timeout=5).status_code == 413
    assert fake.dump() == {}


def test_session_create_fields_are_case_insensitive_and_validated(fake: FakeConsul) -> None:
    ok = requests.put(f"{fake.addr}/v1/session/create", timeout=5,
                      data=json.dumps({"name": "x", "ttl": "15s", "lockdelay": 2, "behavior": "delete", "checks": []}))
    session = ok.json()["ID"]
    info = requests.get(f"{fake.addr}/v1/session/info/{session}", timeout=5).json()[0]
    seen = (info["Behavior"], info["LockDelay"], info["TTL"], info["NodeChecks"])
    assert seen == ("delete", 2_000_000_000, "15s", [])
    bad = requests.put(f"{fake.addr}/v1/session/create", data=json.dumps({"Behavior": "explode"}), timeout=5)
    assert bad.status_code == 500 and "Invalid Behavior" in bad.text
    assert requests.get(f"{fake.addr}/v1/session/info/unknown", timeout=5).json() == []
    assert requests.put(f"{fake.addr}/v1/session/renew/unknown", timeout=5).status_code == 404
    assert requests.put(f"{fake.addr}/v1/session/destroy/unknown", timeout=5).json() is True


def test_session_expires_only_after_twice_the_ttl_with_manual_clock() -> None:
    clock = ManualClock()
    with FakeConsul(clock=clock) as fake:
        store = ConsulStore(fake.addr)
        holder = store.session_create(name="h", ttl=10, lock_delay=5)
        other = store.session_create(name="o", ttl=1000, lock_delay=0)
        assert store.put("lock", b"h", acquire=holder)
        clock.advance(15)  # past the TTL, within 2 x TTL: Consul keeps it
        assert store.get("lock").session == holder
        clock.advance(6)
        assert store.get("lock").session is None
        assert store.session_renew(holder) is False
        assert store.put("lock", b"o", acquire=other) is False  # lock-delay after invalidation
        clock.advance(4)
        assert store.put("lock", b"o", acquire=other) is False
        clock.advance(1.5)
        assert store.put("lock", b"o", acquire=other) is True


def test_renew_restarts_the_ttl_timer() -> None:
    clock = ManualClock()
    with FakeConsul(clock=clock) as fake:
        store = ConsulStore(fake.addr)
        session = store.session_create(name="h", ttl=10, lock_delay=0)
        for _ in range(5):
            clock.advance(15)
            assert store.session_renew(session) is True
        fake.pause_ttl_reaper()
        clock.advance(100)
        assert store.session_renew(session) is True  # a paused reaper never expires anything
        fake.pause_ttl_reaper(False)
        clock.advance(21)
        assert store.session_renew(session) is False


def test_session_ttl_below_agent_minimum_is_a_clear_error() -> None:
    with FakeConsul() as fake:  # Consul's default session_ttl_min: 10 s
        with pytest.raises(StoreError, match="Invalid Session TTL") as info:
            ConsulStore(fake.addr).session_create(name="x", ttl=1)
        assert not isinstance(info.value, StoreUnavailable)


# -- adapter traps ---------------------------------------------------------------------------


def test_txn_and_every_call_carry_the_acl_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "ambient-wrong-token")  # py-consul would prefer this
    with FakeConsul(acl_tokens={"right"}, session_ttl_min=0.01) as fake:
        store = ConsulStore(fake.addr, token="right")
        assert store.txn([Set("a", b"1")]).ok
        assert store.put("b", b"2") and store.get("b").value == b"2"
        session = store.session_create(name="s", ttl=1, lock_delay=0)
        assert store.session_renew(session)
        assert set(fake.tokens_seen("/v1/")) == {"right"}
        with pytest.raises(StoreError, match="permission denied"):
            ConsulStore(fake.addr, token="wrong").get("a")
        with pytest.raises(StoreError, match="permission denied"):
            ConsulStore(fake.addr, token="wrong").txn([Set("a", b"2")])
        assert fake.dump()["a"] == b"1"


def test_token_file_datacenter_and_namespace_from_config(fake: FakeConsul, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    cfg = StoreConfig(backend="consul", consul_addr=fake.addr, consul_token_file=str(token_file),
                      consul_datacenter="dc7", consul_namespace="team-a", consul_timeout=3.0)
    store = ConsulStore.from_config(cfg)
    store.put("k", b"v")
    assert store.txn([Set("t", b"v")]).ok
    store.get("k")
    assert set(fake.tokens_seen("/v1/")) == {"from-file"}
    for query in fake.queries_seen("/v1/"):
        assert query.get("dc") == "dc7" and query.get("ns") == "team-a", query
    with pytest.raises(StoreError, match="consul_token_file"):
        ConsulStore.from_config(StoreConfig(consul_addr=fake.addr, consul_token_file=str(tmp_path / "none")))
    with pytest.raises(StoreError, match="consul_addr"):
        ConsulStore("ftp://nowhere")


def test_tls_with_ca_and_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    with FakeConsul(ssl_context=context) as fake:
        assert fake.addr.startswith("https://")
        store = ConsulStore(fake.addr, ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                            key_file=str(pki.client_key), timeout=3)
        assert store.put("secure", b"1") and store.get("secure").value == b"1"
        assert store.txn([Set("t", b"1")]).ok
        with pytest.raises(StoreUnavailable):  # no client certificate: the handshake fails
            ConsulStore(fake.addr, ca_file=str(pki.ca), timeout=3).get("secure")
        with pytest.raises(StoreUnavailable):  # the system CAs do not know our CA
            ConsulStore(fake.addr, cert_file=str(pki.client_cert), key_file=str(pki.client_key), timeout=3).get("x")


@pytest.mark.parametrize("fault", ["status", "reset", "slow"])
def test_faults_raise_store_unavailable_then_recover(fake: FakeConsul, fault: str) -> None:
    store = ConsulStore(fake.addr, timeout=0.5)
    store.put("k", b"v")
    if fault == "status":
        fake.fail(1, status=503)
    elif fault == "reset":
        fake.reset(1)
    else:
        fake.delay(1.5, 1)
    with pytest.raises(StoreUnavailable):
        store.txn([Set("k", b"changed")]) if fault != "slow" else store.get("k")
    assert store.get("k").value in (b"v", b"changed") if fault == "slow" else store.get("k").value == b"v"


def test_watch_index_travels_as_string_and_zero_is_not_sent(fake: FakeConsul) -> None:
    store = ConsulStore(fake.addr)
    store.put("w", b"1")
    first = store.watch("w", index=0, wait=5)
    assert isinstance(first.index, int) and first.index >= 1
    assert "index" not in fake.queries_seen("/v1/kv/w")[-1]
    threading.Timer(0.2, lambda: store.put("w", b"2")).start()
    second = store.watch("w", index=first.index, wait=5)
    assert second.index > first.index
    sent = [q for q in fake.queries_seen("/v1/kv/w") if "index" in q][-1]
    assert sent["index"] == str(first.index) and parse_duration(sent["wait"]) == 5


def test_spurious_wakeup_returns_unchanged_and_watcher_ignores_it(fake: FakeConsul) -> None:
    store = ConsulStore(fake.addr)
    store.put("w", b"1")
    index = store.get("w").modify_index
    threading.Timer(0.2, fake.spurious_wakeup).start()
    started = time.monotonic()
    woke = store.watch("w", index=index, wait=10)
    assert woke.index == index and time.monotonic() - started < 5
    watcher = Watcher(store, "w", wait=5)
    assert watcher.next(timeout=2).index == index  # first call: current state
    threading.Timer(0.2, fake.spurious_wakeup).start()
    threading.Timer(0.5, lambda: store.put("w", b"2")).start()
    changed = watcher.next(timeout=5)
    assert changed is not None and changed.entries[0].value == b"2"


def test_watcher_resets_when_the_index_goes_backwards(fake: FakeConsul) -> None:
    store = ConsulStore(fake.addr)
    store.put("p/a", b"old")
    snap = fake.snapshot()
    for i in range(5):
        store.put("p/a", f"new{i}".encode())
    watcher = Watcher(store, "p/", recurse=True, wait=5)
    assert watcher.next(timeout=2).entries[0].value == b"new4"
    threading.Timer(0.2, lambda: fake.restore(snap)).start()  # snapshot restore: index goes back
    result = watcher.next(timeout=5)
    assert result is not None and result.entries[0].value == b"old"
    assert watcher.resets == 1 and watcher.index >= 1


def test_watcher_backs_off_through_outages(fake: FakeConsul) -> None:
    store = ConsulStore(fake.addr, timeout=0.5)
    store.put("w", b"1")
    watcher = Watcher(store, "w", wait=1)
    watcher.next(timeout=2)
    fake.fail(3, status=500)
    threading.Timer(0.3, lambda: store.put("w", b"2") if not fake.faults else None).start()
    threading.Timer(1.0, lambda: store.put("w", b"3")).start()
    result = watcher.next(timeout=8)
    assert result is not None and result.entries[0].value in (b"2", b"3")


# -- helpers ---------------------------------------------------------------------------------


def test_watch_loop_rules_and_rate_limiter() -> None:
    assert next_index(10, 12) == 12
    assert next_index(10, 10) == 10
    assert next_index(10, 3) == 0  # backwards: reset
    assert next_index(0, 0) == 1  # never 0 after a reply
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire()
    assert slept == [pytest.approx(0.1), pytest.approx(0.1)]  # burst of 2, then 10/s


def test_go_duration() -> None:
    assert go_duration(15) == "15s"
    assert go_duration(0.25) == "0.25s"
    assert go_duration(0) == "0s"
    assert parse_duration("1m30s") == 90
    assert parse_duration(go_duration(0.000001)) == pytest.approx(0.000001)
