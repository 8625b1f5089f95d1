"""Unit tests of the API building blocks that need no store: hashing, tokens, rate limit, dto, problems."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import falcon
import falcon.testing
import pytest

from leoflow.api import dto, problem
from leoflow.api.auth.passwords import generate_password, hash_password, verify_dummy, verify_password
from leoflow.api.auth.ratelimit import LoginRateLimiter
from leoflow.api.auth.roles import Role, required_role
from leoflow.api.auth.tokens import TokenExpired, TokenInvalid, TokenService, load_signing_key
from leoflow.config import Config

KEY = b"k" * 32


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_scrypt_roundtrip_and_format() -> None:
    encoded = hash_password("s3cret-pass", n=2**10)
    assert encoded.startswith("scrypt$1024$8$1$")
    assert verify_password("s3cret-pass", encoded)
    assert not verify_password("s3cret-Pass", encoded)
    assert not verify_password("x", "bcrypt$nonsense")
    assert not verify_password("x", "scrypt$a$b$c$d$e")
    assert hash_password("same", n=2**10) != hash_password("same", n=2**10)  # salted
    verify_dummy("anything")
    assert len(generate_password()) >= 20
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_tokens_issue_verify_expire_tamper() -> None:
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    tokens = TokenService(KEY, expiry_seconds=60, clock=clock)
    token = tokens.issue("alice", "op")
    claims = tokens.verify(token)
    assert (claims.username, claims.role) == ("alice", "op")
    assert claims.expires_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    clock.now += timedelta(seconds=60)
    with pytest.raises(TokenExpired):
        tokens.verify(token)
    other = TokenService(b"o" * 32, expiry_seconds=60, clock=clock)
    with pytest.raises(TokenInvalid):
        other.verify(tokens.issue("alice", "op"))
    with pytest.raises(TokenInvalid):
        tokens.verify("not.a.jwt")
    head, body, sig = tokens.issue("alice", "viewer").split(".")
    with pytest.raises(TokenInvalid):
        tokens.verify(f"{head}.{body}.{sig[:-2]}AA")
    with pytest.raises(ValueError, match="32 bytes"):
        TokenService(b"short", expiry_seconds=1, clock=clock)


def test_token_rejects_alg_none() -> None:
    import jwt

    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    tokens = TokenService(KEY, expiry_seconds=60, clock=clock)
    forged = jwt.encode({"sub": "admin", "role": "admin", "exp": 2**40, "iat": 0, "jti": "x",
                         "iss": "leoflow", "aud": "leoflow-user"}, key=None, algorithm="none")
    with pytest.raises(TokenInvalid):
        tokens.verify(forged)


def test_signing_key_generated_once_0600(tmp_path) -> None:
    config = Config(home=str(tmp_path / "home"))
    key = load_signing_key(config)
    path = tmp_path / "home" / "jwt_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_signing_key(config) == key and len(key) >= 32
    config.auth.jwt_secret = "x" * 40
    assert load_signing_key(config) == b"x" * 40
    config.auth.jwt_secret = ""
    config.auth.jwt_secret_file = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="jwt_secret_file"):
        load_signing_key(config)


def test_rate_limiter_counts_failures_per_minute() -> None:
    clock = Clock(datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC))
    limiter = LoginRateLimiter(3, clock)
    for _ in range(3):
        assert limiter.retry_after("1.2.3.4") is None
        limiter.failure("1.2.3.4")
    assert limiter.retry_after("1.2.3.4") == 50
    assert limiter.retry_after("5.6.7.8") is None
    clock.now += timedelta(minutes=1)
    assert limiter.retry_after("1.2.3.4") is None


def test_roles_default_fail_closed() -> None:
    class Declared:
        roles = {"GET": Role.OP, "PATCH": Role.USER}

    class Bare:
        pass

    class Public:
        public = True

    assert required_role(Declared(), "GET") is Role.OP
    assert required_role(Declared(), "PATCH") is Role.USER
    assert required_role(Declared(), "DELETE") is Role.ADMIN
    assert required_role(Bare(), "GET") is Role.VIEWER
    assert required_role(Bare(), "POST") is Role.ADMIN
    assert required_role(Public(), "POST") is None
    assert Role.parse(" Admin ") is Role.ADMIN
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("root")


def _req(query: str = "", **kw) -> falcon.Request:
    req = falcon.testing.create_req(query_string=query, **kw)
    req.options.keep_blank_qs_values = True
    return req


def test_dto_query_semantics() -> None:
    req = _req("state=running&state=queued&tags=a,b&cursor=&empty=&limit=5000&offset=3")
    assert dto.query_list(req, "state") == ["running", "queued"]
    assert dto.query_list(req, "tags") == ["a,b"]  # never comma-split
    assert dto.query_str(req, "empty") is None
    assert dto.is_cursor_mode(req)
    page = dto.page(req)
    assert (page.limit, page.offset) == (dto.DEFAULT_MAX_LIMIT, 3)
    for bad, field in (("limit=-1", "query.limit"), ("offset=x", "query.offset")):
        with pytest.raises(problem.Problem) as err:
            dto.page(_req(bad))
        assert err.value.status_code == 422 and err.value.field == field


def test_dto_datetimes() -> None:
    assert dto.iso(datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)) == "2026-01-02T03:04:05.123456Z"
    assert dto.iso(None) is None
    assert dto.parse_aware("2026-11-28T10:07:23.422Z", "q") == datetime(2026, 11, 28, 10, 7, 23, 422000, tzinfo=UTC)
    assert dto.parse_aware("2026-01-01T01:00:00+01:00", "q") == datetime(2026, 1, 1, tzinfo=UTC)
    for bad in ("2026-01-01T00:00:00", "yesterday"):
        with pytest.raises(problem.Problem) as err:
            dto.parse_aware(bad, "query.start_date_gte")
        assert err.value.status_code == 422 and "query.start_date_gte" in err.value.description
    rng = dto.datetime_range(_req("run_after_gte=2026-01-01T00:00:00Z&run_after_lt=2026-01-02T00:00:00Z"), "run_after")
    assert rng.contains(datetime(2026, 1, 1, tzinfo=UTC))
    assert not rng.contains(datetime(2026, 1, 2, tzinfo=UTC))
    assert not rng.contains(None)
    assert dto.time_delta(timedelta(days=1, seconds=5)) == {"__type": "TimeDelta", "days": 1, "seconds": 5,
                                                             "microseconds": 0}


def test_dto_patterns_and_ordering() -> None:
    m = dto.pattern_matcher("EXAMPLE|tut%al")
    assert m is not None and m("my_example_dag") and m("tutorial") and not m("other")
    assert dto.pattern_matcher("~") is None and dto.pattern_matcher("") is None
    p = dto.prefix_matcher("ex|tu")
    assert p is not None and p("example") and not p("Example")
    rows = [{"a": 2, "b": "x"}, {"a": None, "b": "y"}, {"a": 1, "b": "y"}]
    keys = {"a": lambda r: r["a"], "b": lambda r: r["b"]}
    orders = dto.order_by(_req("order_by=-b&order_by=a"), keys, "a")
    assert [r["a"] for r in dto.sort_rows(rows, orders, keys)] == [1, None, 2]
    assert [r["a"] for r in dto.sort_rows(rows, dto.order_by(_req(), keys, "a"), keys)] == [1, 2, None]
    with pytest.raises(problem.Problem) as err:
        dto.order_by(_req("order_by=nope"), keys, "a")
    assert err.value.status_code == 400 and "nope" in err.value.description


def test_cursor_paging_forward_and_back() -> None:
    rows = list(range(7))
    first = dto.cursor_page(_req("cursor="), rows, limit=3)
    assert first.rows == [0, 1, 2] and first.previous_cursor is None and first.total_entries == 7
    second = dto.cursor_page(_req(f"cursor={first.next_cursor}"), rows, limit=3)
    assert second.rows == [3, 4, 5]
    assert second.previous_cursor is not None and second.previous_cursor.startswith("~")
    back = dto.cursor_page(_req(f"cursor={second.previous_cursor}"), rows, limit=3)
    assert back.rows == [0, 1, 2]
    last = dto.cursor_page(_req(f"cursor={second.next_cursor}"), rows, limit=3)
    assert last.rows == [6] and last.next_cursor is None
    assert dto.cursor_start(_req("cursor="), 3) == 0
    assert dto.cursor_start(_req(f"cursor={second.next_cursor}"), 3) == 6
    assert dto.cursor_start(_req(f"cursor={second.previous_cursor}"), 3) == 0
    with pytest.raises(problem.Problem) as err:
        dto.cursor_page(_req("cursor=garbage!"), rows, limit=3)
    assert err.value.status_code == 422


def _body_req(body: bytes, content_type: str = "application/json") -> falcon.Request:
    return falcon.testing.create_req(method="POST", body=body, headers={"Content-Type": content_type})


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["is_paused"],
          "properties": {"is_paused": {"type": "boolean"}}}


@pytest.mark.parametrize(
    ("body", "ctype", "status", "needle"),
    [
        (b'{"is_paused": true', "application/json", 400, "malformed JSON"),
        (b"", "application/json", 400, "empty"),
        (b'{"is_paused": "yes"}', "application/json", 422, "body.is_paused"),
        (b'{"is_paused": true, "owner": "x"}', "application/json", 422, "body.owner"),
        (b"{}", "application/json", 422, "body.is_paused: field required"),
        (b"is_paused=true", "text/plain", 415, "application/json"),
        (b"\xff\xfe", "application/json", 400, "UTF-8"),
        (b'{"is_paused": true}' + b" " * 2_000_000, "application/json", 413, "limit"),
    ],
)
def test_json_body_errors(body: bytes, ctype: str, status: int, needle: str) -> None:
    with pytest.raises(problem.Problem) as err:
        dto.json_body(_body_req(body, ctype), SCHEMA)
    assert err.value.status_code == status
    assert needle in err.value.description


def test_json_body_ok() -> None:
    assert dto.json_body(_body_req(b'{"is_paused": false}'), SCHEMA) == {"is_paused": False}


def test_problem_document_shape() -> None:
    err = problem.invalid("query.limit", "must be >= 0")
    doc = problem.problem_document(err, "/api/v2/dags")
    assert doc["type"].endswith("/validation-error") and doc["status"] == 422
    assert doc["detail"] == "query.limit: must be >= 0" and doc["instance"] == "/api/v2/dags"
    assert doc["errors"] == [{"loc": ["query", "limit"], "msg": "must be >= 0", "type": "value_error"}]
    assert json.dumps(doc)
    plain = problem.problem_document(falcon.HTTPNotFound(), "/x")
    assert plain["title"] == "Not Found" and plain["detail"] == "Not Found"
