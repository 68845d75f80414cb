"""Bearer tokens for the load test's users: fetched once per user and refreshed only near expiry.

Cognito bills every client_credentials token it issues, so a load test that fetched a token per
request would cost more than the requests it sends. Each simulated user holds one token and asks
for a new one only when fewer than ``refresh_margin`` seconds are left on it.

Where the token comes from, in this order:

* ``ONNX_LAMBDA_TOKEN``: a token you fetched yourself (``onnx-lambda token ...``); it can't be
  refreshed, so a run must end before it expires;
* ``ONNX_LAMBDA_TOKEN_URL`` + ``ONNX_LAMBDA_CLIENT_ID`` + ``ONNX_LAMBDA_CLIENT_SECRET``: a machine
  token by client_credentials from a deployed stack's Cognito domain;
* otherwise the local stack's dev user (``onnx-lambda serve``'s state file, ``ONNX_LAMBDA_STATE_FILE``).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

#: Refresh when less than this is left, so no request goes out with a token about to expire in flight.
DEFAULT_REFRESH_MARGIN_SECONDS: Final = 300.0
#: After a failed fetch, wait this long before asking again rather than hammer the token endpoint.
RETRY_AFTER_SECONDS: Final = 5.0


class TokenUnavailable(Exception):
    """No usable token: the message says why and what to set."""


@dataclass(frozen=True)
class TokenSource:
    """Fetches a token; ``fetch(fresh=True)`` must bypass any cache."""

    description: str
    fetch: Callable[[bool], str]
    refreshable: bool = True


def token_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT, read without verifying it (the service verifies; we only schedule)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expiry = claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise TokenUnavailable("the token is not a JWT with an exp claim") from None
    if not isinstance(expiry, int | float):
        raise TokenUnavailable("the token's exp claim is not a number")
    return float(expiry)


class BearerToken:
    """One user's token: :meth:`current` fetches it on first use and again only near its expiry."""

    def __init__(
        self,
        source: TokenSource,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
        on_fetch: Callable[[float, BaseException | None], None] | None = None,
    ) -> None:
        self._source = source
        self._margin = refresh_margin
        self._clock = clock
        self._on_fetch = on_fetch
        self._token: str | None = None
        self._expires_at = 0.0
        self._failed_at: float | None = None
        self.fetches = 0

    def current(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._expires_at - self._margin:
            return self._token
        still_valid = self._token is not None and now < self._expires_at
        if self._token is not None and not self._source.refreshable:
            if still_valid:
                return self._token  # as good as it gets: the run should end before it expires
            raise TokenUnavailable(f"the token from {self._source.description} has expired and can't be refreshed")
        try:
            if self._failed_at is not None and now < self._failed_at + RETRY_AFTER_SECONDS:
                raise TokenUnavailable(f"no token from {self._source.description}: the last attempt failed")
            token, expires_at = self._fetch(fresh=False)
            if self._source.refreshable and expires_at - self._margin <= self._clock():
                # A cached token with less than the margin left: ask for a new one rather than reuse it.
                token, expires_at = self._fetch(fresh=True)
        except Exception:
            if still_valid and self._token is not None:
                return self._token  # the old one still works; ask again after RETRY_AFTER_SECONDS
            raise
        self._token, self._expires_at = token, expires_at
        return token

    def _fetch(self, *, fresh: bool) -> tuple[str, float]:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            token = self._source.fetch(fresh)
            expires_at = token_expiry(token)
        except Exception as exc:
            error = exc
            self._failed_at = self._clock()
            raise
        finally:
            self.fetches += 1
            if self._on_fetch is not None:
                self._on_fetch((time.perf_counter() - started) * 1000, error)
        self._failed_at = None
        return token, expires_at


def token_source_from_environment(environ: Mapping[str, str] = os.environ) -> TokenSource:
    """Where this run's tokens come from, chosen by the environment (see the module docstring)."""
    static = environ.get("ONNX_LAMBDA_TOKEN", "").strip()
    if static:
        return TokenSource("ONNX_LAMBDA_TOKEN", lambda fresh: static, refreshable=False)
    token_url = environ.get("ONNX_LAMBDA_TOKEN_URL")
    if token_url:
        client_id = environ.get("ONNX_LAMBDA_CLIENT_ID")
        secret = environ.get("ONNX_LAMBDA_CLIENT_SECRET")
        if not client_id or not secret:
            raise TokenUnavailable("ONNX_LAMBDA_TOKEN_URL needs ONNX_LAMBDA_CLIENT_ID and ONNX_LAMBDA_CLIENT_SECRET")
        scopes = environ.get("ONNX_LAMBDA_SCOPES", "inference/invoke").split()

        def machine(fresh: bool) -> str:
            from onnx_lambda_tools.tokens import machine_token

            return machine_token(token_url, client_id, secret, scopes, use_cache=not fresh)

        return TokenSource(f"client_credentials at {token_url}", machine)

    def local_user(fresh: bool) -> str:
        from onnx_lambda_tools.local.cloud import LocalStack, default_state_path
        from onnx_lambda_tools.tokens import dev_user_token

        return dev_user_token(LocalStack.load(default_state_path()), use_cache=not fresh)

    return TokenSource("the local stack's dev user", local_user)
