"""Identity on a real store (SQLite, and the PostgreSQL and MariaDB servers): passwords,
users, API tokens, sessions, CSRF tokens, sign-in limits, and the append-only review audit."""

from __future__ import annotations

import itertools
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from _tamper import tampered_signature  # type: ignore[import-not-found]
from fraudlens.auth import (
    Authenticator,
    InvalidCredentialsError,
    LoginLimiter,
    Passwords,
    RateLimitedError,
    digest,
    normalise_username,
)
from fraudlens.errors import DataError, NotFoundError, StoreError
from fraudlens.store import Store

pytest.importorskip("sqlalchemy")
argon2 = pytest.importorskip("argon2")

SRC = Path(__file__).resolve().parents[2] / "src" / "fraudlens"
PASSWORD = "correct horse battery staple"


def fast_passwords() -> Passwords:
    """Real Argon2id with small parameters, so tests that sign in often stay quick."""
    return Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


def _auth(store: Store, **kw: object) -> Authenticator:
    kw.setdefault("passwords", fast_passwords())
    return Authenticator(store, **kw)  # type: ignore[arg-type]


def _event(store: Store, account: str = "acct-1") -> int:
    end = datetime(2024, 3, 1, tzinfo=UTC)
    store.add_risk_events(
        [
            {
                "account_id": account,
                "score": 0.97,
                "threshold": 0.9,
                "model_version": "market-features:v0001",
                "window_start": end - timedelta(hours=24),
                "window_end": end,
            }
        ]
    )
    items, _ = store.list_risk_events(account_id=account)
    return int(items[0].id if hasattr(items[0], "id") else items[0]["id"])


# ------------------------------------------------------------------------- passwords


def test_password_hash_round_trip_with_the_default_argon2id_parameters() -> None:
    pw = Passwords()
    h = pw.hash(PASSWORD)
    assert h.startswith("$argon2id$") and PASSWORD not in h
    assert "m=65536,t=3,p=4" in h  # RFC 9106 low-memory profile
    assert pw.verify(h, PASSWORD)
    assert not pw.verify(h, PASSWORD + "x")
    assert not pw.verify("not a hash", PASSWORD)
    assert pw.hash(PASSWORD) != h  # salted
    assert not pw.needs_rehash(h)
    assert pw.needs_rehash(fast_passwords().hash(PASSWORD))


def test_user_names_and_password_rules(store: Store) -> None:
    auth = _auth(store)
    assert normalise_username("  Ana.Lyst@Bank ") == "ana.lyst@bank"
    for bad in ("", "has space", "-dash", "x" * 65, "nul\x00", "é"):
        with pytest.raises(DataError):
            normalise_username(bad)
    with pytest.raises(DataError, match="at least 12"):
        auth.create_user("ana", "analyst", "short")
    with pytest.raises(DataError, match="must not be the user name"):
        auth.create_user("ana.lyst.one", "analyst", "ANA.LYST.ONE")
    # set from a pipe, a control character had locked the user out of the login page
    for bad, where in (
        ("abc\x00defghijkl", "U+0000 at character 4"),
        ("tab\there-and-there", "U+0009"),
    ):
        with pytest.raises(DataError, match=re.escape(f"control character ({where}")):
            auth.create_user("ana", "analyst", bad)
    with pytest.raises(DataError, match="role"):
        auth.create_user("ana", "root", PASSWORD)
    with pytest.raises(DataError, match="password is required"):
        auth.create_user("ana", "analyst")
    with pytest.raises(DataError, match="API tokens"):
        auth.create_user("svc", "service", PASSWORD)
    ana = auth.create_user("Ana", "analyst", PASSWORD)
    assert (ana.username, ana.role, ana.disabled, ana.has_password) == (
        "ana",
        "analyst",
        False,
        True,
    )
    with pytest.raises(DataError, match="already exists"):
        auth.create_user("ANA", "admin", PASSWORD)
    svc = auth.create_user("scorer", "service")
    assert not svc.has_password
    assert [u.username for u in auth.users()] == ["ana", "scorer"]
    # The stored hash is Argon2, never the password.
    found = store.user_credentials("ana")
    assert found is not None and found[1] is not None and found[1].startswith("$argon2id$")


# ---------------------------------------------------------------------------- sessions


def test_sign_in_session_csrf_and_sign_out(store: Store) -> None:
    auth = _auth(store)
    auth.create_user("ana", "analyst", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        auth.sign_in("ana", "wrong password!!", "10.0.0.1")
    with pytest.raises(InvalidCredentialsError):
        auth.sign_in("nobody", PASSWORD, "10.0.0.1")
    grant = auth.sign_in(" ANA ", PASSWORD, "10.0.0.1")
    assert grant.user.username == "ana"
    # A longer name is another name, not the 64-character prefix it starts with.
    auth.create_user("a" * 64, "analyst", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        auth.sign_in("a" * 64 + "b", PASSWORD, "10.0.0.2")
    assert auth.sign_in("a" * 64, PASSWORD, "10.0.0.2").user.username == "a" * 64
    # Only the digest of the session token is stored.
    assert grant.session.id == digest(auth._secret()[1].loads(grant.cookie, 60) or "")
    signed = auth.check_session(grant.cookie)
    assert signed is not None and signed.user.username == "ana"
    assert signed.csrf_token == grant.csrf_token
    assert auth.csrf_ok(signed, grant.csrf_token)
    assert not auth.csrf_ok(signed, None) and not auth.csrf_ok(signed, "")
    last = "B" if grant.csrf_token.endswith("A") else "A"
    assert not auth.csrf_ok(signed, grant.csrf_token[:-1] + last)
    other = auth.sign_in("ana", PASSWORD, "10.0.0.1")
    assert other.csrf_token != grant.csrf_token  # bound to its session
    assert not auth.csrf_ok(signed, other.csrf_token)
    # A tampered or foreign cookie is refused before any lookup.
    assert auth.check_session(tampered_signature(grant.cookie)) is None
    assert auth.check_session("") is None
    foreign = Authenticator(store, secret_key="k" * 40, passwords=fast_passwords())
    assert foreign.check_session(grant.cookie) is None
    # Every process on the same database shares the stored key.
    assert _auth(store).check_session(grant.cookie) is not None
    auth.sign_out(grant.cookie)
    assert auth.check_session(grant.cookie) is None
    assert auth.check_session(other.cookie) is not None


def test_sessions_expire_and_idle_out(store: Store) -> None:
    short = _auth(store, session_hours=1.5 / 3600)
    short.create_user("ana", "analyst", PASSWORD)
    grant = short.sign_in("ana", PASSWORD, "a")
    assert short.check_session(grant.cookie) is not None
    time.sleep(2.0)
    assert short.check_session(grant.cookie) is None
    idle = _auth(store, idle_minutes=1.5 / 60)
    grant = idle.sign_in("ana", PASSWORD, "a")
    time.sleep(2.0)
    assert idle.check_session(grant.cookie) is None


def test_disabled_users_cannot_sign_in_or_use_sessions_and_tokens(store: Store) -> None:
    auth = _auth(store, token_cache_seconds=0)
    auth.create_user("ana", "analyst", PASSWORD)
    auth.create_user("scorer", "service")
    grant = auth.sign_in("ana", PASSWORD, "a")
    value, _ = auth.create_token("scorer")
    assert auth.check_token(value) is not None
    auth.disable_user("ana")
    auth.disable_user("scorer")
    assert auth.check_session(grant.cookie) is None
    with pytest.raises(InvalidCredentialsError):
        auth.sign_in("ana", PASSWORD, "a")
    assert auth.check_token(value) is None
    with pytest.raises(DataError, match="disabled"):
        auth.create_token("scorer")
    auth.enable_user("ana")
    auth.enable_user("scorer")
    assert auth.check_token(value) is not None
    # Disabling ended the old session for good: enabling again does not revive it.
    assert auth.check_session(grant.cookie) is None
    assert auth.sign_in("ana", PASSWORD, "a").user.username == "ana"
    with pytest.raises(NotFoundError):
        auth.disable_user("nobody")


def test_service_accounts_cannot_sign_in(store: Store) -> None:
    auth = _auth(store)
    auth.create_user("scorer", "service")
    with pytest.raises(InvalidCredentialsError):
        auth.sign_in("scorer", PASSWORD, "a")


def test_weak_hash_is_replaced_at_sign_in(store: Store) -> None:
    weak = Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    _auth(store, passwords=weak).create_user("ana", "analyst", PASSWORD)
    before = store.user_credentials("ana")
    assert before is not None and before[1] is not None and "m=1024" in before[1]
    _auth(store).sign_in("ana", PASSWORD, "a")
    after = store.user_credentials("ana")
    assert after is not None and after[1] is not None and "m=8192" in after[1]


# ------------------------------------------------------------------------------ tokens


def test_api_tokens_are_stored_hashed_and_revocable(store: Store) -> None:
    auth = _auth(store)
    auth.create_user("scorer", "service")
    value, token = auth.create_token("scorer", name="batch")
    assert value.startswith("flk_") and len(value) >= 40
    assert token.prefix == value[:12]
    found = store.api_token_by_hash(digest(value))
    assert found is not None and found[0].id == token.id
    # The value itself is nowhere in the database.
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        rows = conn.execute(sa.text("SELECT token_hash, prefix, name FROM api_tokens")).all()
    assert all(value not in " ".join(map(str, r)) for r in rows)
    user = auth.check_token(value)
    assert user is not None and (user.username, user.role) == ("scorer", "service")
    assert auth.check_token(value + "x") is None
    assert auth.check_token("not-a-token") is None
    # Another process (no shared cache) sees a revocation at once; this one too.
    other = _auth(store, token_cache_seconds=0)
    assert other.check_token(value) is not None
    assert auth.revoke_token(token.id).revoked_at is not None
    assert other.check_token(value) is None
    assert auth.check_token(value) is None
    assert auth.revoke_token(token.id).revoked_at is not None  # idempotent
    with pytest.raises(NotFoundError):
        auth.revoke_token(999_999)
    # Expired tokens are refused.
    value2, _ = auth.create_token("scorer", expires_in=timedelta(seconds=1))
    assert other.check_token(value2) is not None
    time.sleep(1.2)
    assert other.check_token(value2) is None
    names = [(t.name, t.revoked_at is not None) for t in auth.tokens("scorer")]
    assert names == [("batch", True), ("default", False)]
    with pytest.raises(NotFoundError):
        auth.create_token("nobody")


def test_a_token_cache_holds_a_revoked_token_at_most_its_ttl(store: Store) -> None:
    auth = _auth(store)
    auth.create_user("scorer", "service")
    value, token = auth.create_token("scorer")
    cached = _auth(store, token_cache_seconds=1.0)
    assert cached.check_token(value) is not None
    store.revoke_api_token(token.id)  # revoked by another process (the CLI)
    assert cached.check_token(value) is not None  # still within the cache's second
    time.sleep(1.1)
    assert cached.check_token(value) is None


# -------------------------------------------------------------------------- rate limits


def test_login_limiter_per_user_and_per_address() -> None:
    now = [0.0]
    lim = LoginLimiter(per_user=3, per_address=5, window_seconds=60, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("ana", "1.1.1.1") == 0
        lim.failed("ana", "1.1.1.1")
    assert lim.retry_after("ana", "2.2.2.2") == pytest.approx(60)  # the name is limited
    assert lim.retry_after("bo", "1.1.1.1") == 0  # the address still has room
    now[0] = 30
    lim.failed("bo", "1.1.1.1")
    lim.failed("cy", "1.1.1.1")
    assert lim.retry_after("dee", "1.1.1.1") == pytest.approx(30)  # 5 from this address
    now[0] = 60.5
    assert lim.retry_after("ana", "2.2.2.2") == 0  # the window slid past
    lim.succeeded("ana")
    # Memory stays bounded whatever is sprayed.
    small = LoginLimiter(per_user=2, per_address=2, max_keys=100, clock=lambda: now[0])
    for i in range(5000):
        small.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(small._failures) <= 100


def test_sign_in_is_rate_limited_per_user_and_address(store: Store) -> None:
    lim = LoginLimiter(per_user=3, per_address=6, window_seconds=60)
    auth = _auth(store, limiter=lim)
    auth.create_user("ana", "analyst", PASSWORD)
    auth.create_user("bo", "analyst", PASSWORD)
    for _ in range(3):
        with pytest.raises(InvalidCredentialsError):
            auth.sign_in("ana", "wrong password!!", "10.0.0.1")
    with pytest.raises(RateLimitedError) as info:
        auth.sign_in("ana", PASSWORD, "10.0.0.9")  # even the right password, elsewhere
    assert 1 <= info.value.retry_after <= 60
    # Another user from the same address is not blocked by ana's name limit...
    assert auth.sign_in("bo", PASSWORD, "10.0.0.1").user.username == "bo"
    # ...until the address has failed too often (password spraying).
    for name in ("cy", "dee", "eve"):
        with pytest.raises(InvalidCredentialsError):
            auth.sign_in(name, PASSWORD, "10.0.0.1")
    with pytest.raises(RateLimitedError):
        auth.sign_in("bo", PASSWORD, "10.0.0.1")
    assert auth.sign_in("bo", PASSWORD, "10.0.0.2").user.username == "bo"


def test_unknown_users_cost_as_much_as_wrong_passwords(store: Store) -> None:
    hashed: list[str] = []

    class Watched(Passwords):
        def verify(self, password_hash: str, password: str) -> bool:
            hashed.append(password_hash)
            return super().verify(password_hash, password)

    auth = Authenticator(store, passwords=Watched())  # default Argon2 parameters
    auth.create_user("ana", "analyst", PASSWORD)

    def cpu(name: str) -> float:
        # CPU time of the whole process (Argon2's lanes may run on other threads), which
        # other work on a busy machine does not inflate the way it does wall time.
        start = time.process_time()
        with pytest.raises(InvalidCredentialsError):
            auth.sign_in(name, "wrong password!!", f"addr-{name}-{time.perf_counter()}")
        return time.process_time() - start

    for name in ("nobody", "ana", "Not A Valid Name!"):
        hashed.clear()
        cpu(name)
        # Every path checks exactly one hash, made with the same parameters.
        assert len(hashed) == 1 and "m=65536,t=3,p=4" in hashed[0], (name, hashed)
    known = min(cpu("ana") for _ in range(3))
    unknown = min(cpu("nobody") for _ in range(3))
    assert unknown > 0.5 * known, (unknown, known)


# ------------------------------------------------------------------------------- audit


def test_review_decisions_append_history_rows(store: Store) -> None:
    auth = _auth(store)
    ana = auth.create_user("ana", "analyst", PASSWORD)
    bo = auth.create_user("bo", "admin", PASSWORD)
    eid = _event(store)
    store.review_risk_event(
        eid, status="confirmed", reviewed_by="ana", note="same-bar round trips", user_id=ana.id
    )
    store.review_risk_event(eid, status="open", reviewed_by="bo", user_id=bo.id)
    store.review_risk_event(eid, status="dismissed", reviewed_by="bo", note="known client")
    history = store.review_history(eid)
    assert [(h.actor, h.user_id, h.from_status, h.to_status, h.note) for h in history] == [
        ("ana", ana.id, "open", "confirmed", "same-bar round trips"),
        ("bo", bo.id, "confirmed", "open", None),
        ("bo", None, "open", "dismissed", "known client"),
    ]
    assert history[0].at <= history[1].at <= history[2].at
    assert history[0].as_dict()["at"].endswith("+00:00")
    with pytest.raises(NotFoundError):
        store.review_risk_event(eid + 1000, status="confirmed", reviewed_by="ana")
    assert len(store.review_history(eid)) == 3
    assert store.review_history(eid + 1000) == []


def test_the_database_refuses_to_change_or_delete_audit_rows(store: Store) -> None:
    import sqlalchemy as sa

    eid = _event(store)
    store.review_risk_event(eid, status="confirmed", reviewed_by="ana", note="n")
    before = store.review_history(eid)
    for stmt in (
        "UPDATE review_audit SET note = 'rewritten'",
        "UPDATE review_audit SET to_status = 'dismissed'",
        "DELETE FROM review_audit",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(sa.text(stmt))
    if store.dialect == "postgresql":
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(sa.text("TRUNCATE review_audit"))
    assert store.review_history(eid) == before


def test_no_code_path_updates_or_deletes_audit_rows() -> None:
    """The application only inserts into review_audit: no UPDATE/DELETE of it anywhere in
    the package (the migration's trigger and downgrade DDL aside)."""
    patterns = [
        re.compile(r"\b(update|delete)\(\s*(_AUDIT|ReviewAuditRow)\b"),
        re.compile(r"\b(UPDATE|DELETE\s+FROM|TRUNCATE)\s+(TABLE\s+)?review_audit\b", re.I),
        re.compile(r"(_AUDIT|ReviewAuditRow)[^\n]*\.(update|delete)\("),
    ]
    offenders = []
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path}: {m.group(0)}" for p in patterns for m in p.finditer(text)]
    assert offenders == []
    from fraudlens.store._auth import AuthStore

    writers = [n for n in dir(AuthStore) if not n.startswith("_") and "audit" in n.lower()]
    assert writers == []  # the audit is written only inside review_risk_event


def test_concurrent_reviews_leave_a_consistent_history(store: Store) -> None:
    eid = _event(store)
    errors: list[BaseException] = []

    def review(who: str, status: str) -> None:
        try:
            for _ in range(8):
                store.review_risk_event(eid, status=status, reviewed_by=who)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=review, args=(who, status))
        for who, status in (("ana", "confirmed"), ("bo", "dismissed"), ("cy", "open"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    history = store.review_history(eid)
    assert len(history) == 24
    assert history[0].from_status == "open"
    for prev, cur in itertools.pairwise(history):
        assert cur.from_status == prev.to_status  # no decision read a stale status
    final = store.get_risk_event(eid)
    status = final.status if hasattr(final, "status") else final["status"]  # type: ignore[index,union-attr]
    assert status == history[-1].to_status


def test_signing_key_is_made_once_and_shared(store: Store) -> None:
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(store.auth_secret("race"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(keys) == 4 and len(set(keys)) == 1 and len(keys[0]) >= 48
    with pytest.raises(DataError, match="32 characters"):
        Authenticator(store, secret_key="short")


def test_one_migration_head_and_a_clean_downgrade(store: Store) -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(store._alembic_config())
    heads = scripts.get_heads()
    assert len(heads) == 1, heads
    before_identity = scripts.get_revision("0003").down_revision
    assert isinstance(before_identity, str)
    store.downgrade(before_identity)
    with pytest.raises(StoreError):
        store.list_users()
    store.upgrade()
    auth = _auth(store)
    auth.create_user("ana", "analyst", PASSWORD)
    eid = _event(store)
    store.review_risk_event(eid, status="confirmed", reviewed_by="ana")
    assert len(store.review_history(eid)) == 1
