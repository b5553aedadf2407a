"""``/api/login``, ``/api/logout``, ``/api/auth/status``, ``/api/csrf-token`` (Ofelia's fork's routes)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, Response
from loguru import logger
from pydantic import BaseModel, Field

from .auth import AUTH_COOKIE
from .context import Ctx, client_address

router = APIRouter(tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(max_length=1024)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    #: Send as ``Authorization: Bearer <token>``; browsers get it as the HttpOnly cookie too.
    token: str
    #: For ``X-CSRF-Token`` on state-changing requests that use the cookie.
    csrf_token: str
    expires_in: float
    expires_at: float
    username: str


class AuthStatus(BaseModel):
    auth_enabled: bool
    authenticated: bool
    username: str | None = None


class CsrfOut(BaseModel):
    csrf_token: str


class LogoutOut(BaseModel):
    logged_out: bool


@router.post(
    "/api/login",
    responses={400: {"description": "authentication is off"}, 401: {"description": "wrong user name or password"},
               429: {"description": "too many failed logins from this address; see Retry-After"}},
)
def login(body: LoginIn, request: Request, response: Response, ctx: Ctx) -> LoginOut:
    """Check the user name and password; issue a token (cookie and body)."""
    auth = ctx.auth
    if not auth.enabled:
        raise HTTPException(400, "web authentication is off (web-auth-enabled = false): nothing to log in to")
    client = client_address(request)
    wait = auth.limiter.retry_after(client)
    if wait is not None:
        raise HTTPException(429, "too many failed logins; try again later", headers={"Retry-After": str(wait)})
    if not auth.check_login(body.username, body.password):
        auth.limiter.failed(client)
        logger.warning(f"web: failed login from {client}")  # never the name tried: it may be a password
        raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
    token = auth.issue(auth.settings.username)
    expires_in = auth.settings.token_expiry_seconds
    response.set_cookie(
        AUTH_COOKIE, token, max_age=int(expires_in), path="/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )
    logger.info(f"web: {auth.settings.username!r} logged in from {client}")
    return LoginOut(
        token=token, csrf_token=auth.csrf_token(token), expires_in=expires_in,
        expires_at=time.time() + expires_in, username=auth.settings.username,
    )


@router.post("/api/logout")
def logout(request: Request, response: Response, ctx: Ctx) -> LogoutOut:
    """Revoke the token used (header or cookie) and clear the cookie."""
    presented = ctx.auth.presented(request)
    revoked = bool(presented and presented.token and ctx.auth.tokens.revoke(presented.token))
    response.delete_cookie(AUTH_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return LogoutOut(logged_out=revoked)


@router.get("/api/auth/status")
def auth_status(request: Request, ctx: Ctx) -> AuthStatus:
    """Whether authentication is on and whether this request carries a valid token."""
    auth = ctx.auth
    if not auth.enabled:
        return AuthStatus(auth_enabled=False, authenticated=False)
    user = auth.subject(auth.presented(request))
    return AuthStatus(auth_enabled=True, authenticated=user is not None, username=user)


@router.get("/api/csrf-token")
def csrf_token(request: Request, ctx: Ctx) -> CsrfOut:
    """The ``X-CSRF-Token`` value for this session (a placeholder before logging in)."""
    auth = ctx.auth
    presented = auth.presented(request)
    session = presented.token if presented is not None and auth.subject(presented) is not None else None
    return CsrfOut(csrf_token=auth.csrf_token(session))
