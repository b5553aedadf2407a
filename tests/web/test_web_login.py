"""Logging in and out: cookies, Bearer tokens, CSRF, the rate limit, and what never reaches the log."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from loguru import logger
from web_support import PASSWORD, USERNAME, Rig

import ofelia_core.web.auth as web_auth
from ofelia_core.web.auth import AUTH_COOKIE, CSRF_HEADER


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Everything loguru writes during the test, at every level."""
    sink = io.StringIO()
    handler = logger.add(sink, level="TRACE", format="{level} {message}")
    yield sink
    logger.remove(handler)


def test_login_sets_a_strict_http_only_cookie_and_returns_the_token(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    client = rig.client()
    response = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 200
    data = response.json()
    assert data["username"] == USERNAME and data["expires_in"] == 24 * 3600
    assert rig.tokens.validate(data["token"]) == USERNAME
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{AUTH_COOKIE}={data['token']};")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # plain http
    assert client.get("/api/auth/status").json() == {"auth_enabled": True, "authenticated": True,
                                                     "username": USERNAME}
    # The CSRF token fetched with the cookie is the session's, the one login returned.
    assert client.get("/api/csrf-token").json()["csrf_token"] == data["csrf_token"]


def test_the_cookie_is_secure_over_https(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    response = rig.client(base_url="https://testserver").post(
        "/api/login", json={"username": USERNAME, "password": PASSWORD})
    assert "; secure" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize(("username", "password"), [(USERNAME, "wrong"), ("someone", PASSWORD), ("", "")])
def test_wrong_credentials_are_401(make_rig: Callable[..., Rig], username: str, password: str) -> None:
    rig = make_rig()
    response = rig.client().post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_bcrypt_runs_for_an_unknown_user_too(make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    """No user enumeration by timing: the password check is not skipped for a wrong name."""
    rig = make_rig()
    checked: list[str] = []
    real = web_auth.verify_password

    def recording(password: str, hashed: str) -> bool:
        checked.append(password)
        return real(password, hashed)

    monkeypatch.setattr(web_auth, "verify_password", recording)
    rig.client().post("/api/login", json={"username": "nobody", "password": "guess"})
    assert checked == ["guess"]


def test_failed_logins_past_the_limit_get_429_with_retry_after(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()  # web-max-login-attempts = 3
    client = rig.client()
    for _ in range(3):
        assert client.post("/api/login", json={"username": USERNAME, "password": "nope"}).status_code == 401
    blocked = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    # Another address is not affected.
    other = rig.client(client=("192.0.2.7", 40000))
    assert other.post("/api/login", json={"username": USERNAME, "password": PASSWORD}).status_code == 200
    rig.clock.advance(61)
    assert client.post("/api/login", json={"username": USERNAME, "password": PASSWORD}).status_code == 200


def test_logout_revokes_the_token_and_clears_the_cookie(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    client = rig.client()
    session = rig.login(client)
    assert client.post("/api/logout").status_code == 403  # cookie without CSRF
    response = client.post("/api/logout", headers={CSRF_HEADER: session["csrf_token"]})
    assert response.status_code == 200 and response.json() == {"logged_out": True}
    assert f'{AUTH_COOKIE}=""' in response.headers["set-cookie"] or "max-age=0" in response.headers["set-cookie"]
    assert rig.tokens.validate(session["token"]) is None
    assert rig.client().get("/api/jobs", headers={"Authorization": f"Bearer {session['token']}"}).status_code == 401


def test_bearer_requests_need_no_csrf(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    token = rig.login(rig.client())["token"]
    response = rig.client().post("/api/jobs/disable", json={"name": "hello"},
                                 headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_a_script_written_for_the_fork_still_logs_in(make_rig: Callable[..., Rig]) -> None:
    """Fetch /api/csrf-token, send it on login, then use the token: what the fork's scripts do."""
    rig = make_rig()
    client = rig.client()
    csrf = client.get("/api/csrf-token").json()["csrf_token"]
    response = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD},
                           headers={CSRF_HEADER: csrf})
    assert response.status_code == 200
    headers = {"Authorization": f"Bearer {response.json()['token']}"}
    assert rig.client().post("/api/jobs/run", json={"name": "hello"}, headers=headers).status_code == 200


def test_login_with_authentication_off_is_refused(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(auth=False)
    response = rig.client().post("/api/login", json={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 400 and "web-auth-enabled" in response.json()["detail"]
    assert rig.client().get("/api/auth/status").json()["auth_enabled"] is False


def test_no_password_or_token_in_the_log(make_rig: Callable[..., Rig], log_text: io.StringIO) -> None:
    rig = make_rig()
    client = rig.client()
    client.post("/api/login", json={"username": "typed-a-password-here", "password": "not-it-1"})
    session = rig.login(client)
    client.get("/api/jobs")
    client.post("/api/jobs/run", json={"name": "hello"}, headers={CSRF_HEADER: session["csrf_token"]})
    client.post("/api/logout", headers={CSRF_HEADER: session["csrf_token"]})
    text = log_text.getvalue()
    assert "logged in" in text and "failed login" in text
    for secret in (PASSWORD, "not-it-1", "typed-a-password-here", session["token"], session["csrf_token"],
                   rig.settings.password_hash):
        assert secret not in text
