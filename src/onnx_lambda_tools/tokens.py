"""Bearer tokens for calling the service: ``onnx-lambda token``.

Two ways to get one, both cached in a 0600 file until a minute before they expire:

* a user token, by Cognito's USER_PASSWORD_AUTH or USER_SRP_AUTH flow (SRP through ``pycognito``),
  from the local stack (moto) or a real user pool; its access token carries
  ``aws.cognito.signin.user.admin``;
* a machine token, by OAuth2 client_credentials against a real Cognito domain's ``/oauth2/token``;
  it carries the resource-server scopes (``inference/invoke``). moto has no token endpoint, so this
  path only runs against real Cognito (and a stand-in endpoint in the tests).

Secrets come from environment variables or a prompt, never from the command line, where ``ps``
would show them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import getpass
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from onnx_lambda_tools.local.cloud import (
    INVOKE_SCOPE_NAME,
    LocalCloudError,
    LocalStack,
    cache_dir,
    default_state_path,
    write_private_file,
)

#: A cached token is reused until this long before it expires.
REUSE_MARGIN_SECONDS: Final = 60
TOKEN_ENDPOINT_TIMEOUT_SECONDS: Final = 10.0
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_CACHE_VERSION: Final = 1

AuthFlow = Literal["password", "srp"]
Clock = Callable[[], float]


class TokenError(Exception):
    """No token could be had; the message says why and never carries a secret."""


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    id_token: str | None
    #: Seconds since the epoch.
    expires_at: float


def default_token_cache_path() -> Path:
    return cache_dir() / "tokens.json"


class TokenCache:
    """Tokens by issuer, client and user (or scopes), in one JSON file only its owner can read."""

    def __init__(self, path: Path | None = None, *, clock: Clock = time.time) -> None:
        self.path = path or default_token_cache_path()
        self._clock = clock

    def get(self, key: str) -> IssuedTokens | None:
        entry = self._read().get(key)
        if not isinstance(entry, Mapping):
            return None
        access_token, id_token, expires_at = (entry.get(k) for k in ("access_token", "id_token", "expires_at"))
        if (
            not isinstance(access_token, str)
            or not (id_token is None or isinstance(id_token, str))
            or not isinstance(expires_at, int | float)
            or self._clock() >= expires_at - REUSE_MARGIN_SECONDS
        ):
            return None
        return IssuedTokens(access_token, id_token, float(expires_at))

    def put(self, key: str, tokens: IssuedTokens) -> None:
        now = self._clock()
        entries = {
            k: v
            for k, v in self._read().items()
            if isinstance(v, Mapping) and isinstance(v.get("expires_at"), int | float) and v["expires_at"] > now
        }
        entries[key] = {
            "access_token": tokens.access_token,
            "id_token": tokens.id_token,
            "expires_at": tokens.expires_at,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self.path, json.dumps({"version": _CACHE_VERSION, "entries": entries}))

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or corrupt: start afresh, the next put rewrites it
        if not isinstance(document, dict) or document.get("version") != _CACHE_VERSION:
            return {}
        entries = document.get("entries")
        return entries if isinstance(entries, dict) else {}


def user_token(
    *,
    client_id: str,
    username: str,
    password: str,
    region: str,
    endpoint_url: str | None = None,
    flow: AuthFlow = "password",
    user_pool_id: str | None = None,
    client_secret: str | None = None,
    id_token: bool = False,
    cache: TokenCache | None = None,
    use_cache: bool = True,
    clock: Clock = time.time,
) -> str:
    """A user's access token (or ID token) from a Cognito app client.

    ``endpoint_url`` points at the local stack; without it the request goes to Cognito in ``region``,
    unsigned (sign-in needs no AWS credentials). SRP needs ``user_pool_id``.
    """
    authority = endpoint_url.rstrip("/") if endpoint_url else f"cognito-idp.{region}"
    key = f"user|{authority}|{client_id}|{username}"
    token_cache = (cache or TokenCache(clock=clock)) if use_cache else None
    cached = token_cache.get(key) if token_cache else None
    if cached is None:
        client = _cognito_client(region, endpoint_url)
        if flow == "srp":
            result = _srp_sign_in(client, client_id, username, password, user_pool_id, client_secret)
        else:
            result = _password_sign_in(client, client_id, username, password, client_secret)
        cached = _issued(result, clock)
        if token_cache:
            token_cache.put(key, cached)
    if not id_token:
        return cached.access_token
    if cached.id_token is None:
        raise TokenError("Cognito returned no ID token")
    return cached.id_token


def dev_user_token(stack: LocalStack, *, flow: AuthFlow = "password", id_token: bool = False, **options: Any) -> str:
    """The local stack's dev user, signed in; ``options`` (cache, use_cache, clock) as for :func:`user_token`."""
    return user_token(
        client_id=stack.user_client_id,
        username=stack.username,
        password=stack.password,
        region=stack.region,
        endpoint_url=stack.endpoint_url,
        flow=flow,
        user_pool_id=stack.user_pool_id,
        id_token=id_token,
        **options,
    )


def machine_token(
    token_url: str,
    client_id: str,
    client_secret: str,
    scopes: Sequence[str] = (INVOKE_SCOPE_NAME,),
    *,
    cache: TokenCache | None = None,
    use_cache: bool = True,
    clock: Clock = time.time,
) -> str:
    """An access token by OAuth2 client_credentials (HTTP Basic client auth, form body)."""
    _check_token_url(token_url)
    key = f"client_credentials|{token_url}|{client_id}|{' '.join(sorted(scopes))}"
    token_cache = (cache or TokenCache(clock=clock)) if use_cache else None
    cached = token_cache.get(key) if token_cache else None
    if cached is not None:
        return cached.access_token
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        token_url,
        data=urllib.parse.urlencode(form).encode("ascii"),
        method="POST",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TOKEN_ENDPOINT_TIMEOUT_SECONDS) as response:  # noqa: S310  # nosec B310  # scheme checked by _check_token_url
            body = response.read(1024 * 1024)
    except urllib.error.HTTPError as error:
        raise TokenError(f"the token endpoint refused the request: HTTP {error.code} {_oauth_error(error)}") from None
    except (OSError, ValueError) as error:
        raise TokenError(f"cannot reach the token endpoint {token_url}: {error}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise TokenError("the token endpoint answered with something other than JSON") from None
    access_token = document.get("access_token") if isinstance(document, dict) else None
    expires_in = document.get("expires_in", 3600) if isinstance(document, dict) else None
    if not isinstance(access_token, str) or not access_token or not isinstance(expires_in, int):
        raise TokenError("the token endpoint's answer has no access_token/expires_in")
    issued = IssuedTokens(access_token, None, clock() + expires_in)
    if token_cache:
        token_cache.put(key, issued)
    return access_token


def secret_hash(username: str, client_id: str, client_secret: str) -> str:
    """Cognito's SECRET_HASH, needed when the app client has a secret."""
    digest = hmac.new(client_secret.encode(), (username + client_id).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _cognito_client(region: str, endpoint_url: str | None) -> Any:
    if endpoint_url:
        # moto takes the region from the request signature; any credentials do.
        return boto3.client(
            "cognito-idp",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106  # nosec B106  # moto's stand-in, not a secret
        )
    return boto3.client("cognito-idp", region_name=region, config=Config(signature_version=UNSIGNED))


def _password_sign_in(
    client: Any, client_id: str, username: str, password: str, client_secret: str | None
) -> Mapping[str, Any]:
    parameters = {"USERNAME": username, "PASSWORD": password}
    if client_secret:
        parameters["SECRET_HASH"] = secret_hash(username, client_id, client_secret)
    try:
        response = client.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters=parameters)
    except ClientError as error:
        raise TokenError(f"Cognito refused the sign-in: {_client_error(error)}") from None
    except BotoCoreError as error:
        raise TokenError(f"cannot reach Cognito: {error}") from None
    return _authentication_result(response)


def _srp_sign_in(
    client: Any,
    client_id: str,
    username: str,
    password: str,
    user_pool_id: str | None,
    client_secret: str | None,
) -> Mapping[str, Any]:
    if not user_pool_id:
        raise TokenError("SRP sign-in needs the user pool id (--user-pool-id)")
    try:
        from pycognito.aws_srp import AWSSRP  # type: ignore[import-untyped]
        from pycognito.exceptions import WarrantException  # type: ignore[import-untyped]
    except ImportError:
        raise TokenError("SRP sign-in needs the pycognito package: pip install pycognito") from None
    srp = AWSSRP(
        username=username,
        password=password,
        pool_id=user_pool_id,
        client_id=client_id,
        client=client,
        client_secret=client_secret,
    )
    try:
        response = srp.authenticate_user()
    except ClientError as error:
        raise TokenError(f"Cognito refused the sign-in: {_client_error(error)}") from None
    except BotoCoreError as error:
        raise TokenError(f"cannot reach Cognito: {error}") from None
    except (WarrantException, NotImplementedError) as error:
        raise TokenError(f"the SRP sign-in needs a step this command doesn't do: {type(error).__name__}") from None
    return _authentication_result(response)


def _authentication_result(response: Mapping[str, Any]) -> Mapping[str, Any]:
    result = response.get("AuthenticationResult")
    if not isinstance(result, Mapping):
        challenge = response.get("ChallengeName", "an unknown challenge")
        raise TokenError(
            f"Cognito asks for {challenge}, which this command does not answer: "
            "finish the sign-in once in the hosted UI or with the AWS CLI"
        )
    return result


def _issued(result: Mapping[str, Any], clock: Clock) -> IssuedTokens:
    access_token = result.get("AccessToken")
    if not isinstance(access_token, str):
        raise TokenError("Cognito returned no access token")
    id_token = result.get("IdToken")
    expires_in = result.get("ExpiresIn", 3600)
    return IssuedTokens(
        access_token,
        id_token if isinstance(id_token, str) else None,
        clock() + (expires_in if isinstance(expires_in, int) else 3600),
    )


def _client_error(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")


def _oauth_error(error: urllib.error.HTTPError) -> str:
    with contextlib.suppress(OSError, ValueError):
        document = json.loads(error.read(64 * 1024))
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return str(document["error"])
    return ""


def _check_token_url(token_url: str) -> None:
    parts = urllib.parse.urlsplit(token_url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return
    raise TokenError("the token URL must be https:// (a client secret never goes over plain HTTP)")


# --- the `onnx-lambda token` command ------------------------------------------------------------


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``onnx-lambda token``; with none it signs the dev user in to the local stack."""
    parser.add_argument("--id-token", action="store_true", help="print the ID token instead of the access token")
    parser.add_argument("--no-cache", action="store_true", help="always ask for a fresh token")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="the local stack's state file (default: $ONNX_LAMBDA_STATE_FILE or the user cache directory)",
    )
    user = parser.add_argument_group("user sign-in (local stack by default; a real pool with --user-pool-client-id)")
    user.add_argument("--username", help="user name (default: the local stack's dev user)")
    user.add_argument(
        "--password-env",
        metavar="VAR",
        default="ONNX_LAMBDA_PASSWORD",
        help="environment variable holding the password; prompted for when unset (default: %(default)s)",
    )
    user.add_argument("--user-pool-client-id", help="app client id of a real user pool")
    user.add_argument("--user-pool-id", help="user pool id (SRP needs it)")
    user.add_argument("--region", help="the real pool's region (default: $AWS_REGION or $AWS_DEFAULT_REGION)")
    user.add_argument("--srp", action="store_true", help="sign in with SRP instead of USER_PASSWORD_AUTH")
    machine = parser.add_argument_group("machine token (OAuth2 client_credentials against a real Cognito domain)")
    machine.add_argument("--client-credentials", action="store_true", help="get a machine token")
    machine.add_argument("--token-url", help="https://<domain>.auth.<region>.amazoncognito.com/oauth2/token")
    machine.add_argument("--client-id", help="the machine app client id")
    machine.add_argument(
        "--client-secret-env",
        metavar="VAR",
        default="ONNX_LAMBDA_CLIENT_SECRET",
        help="environment variable holding the client secret; prompted for when unset (default: %(default)s)",
    )
    machine.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        metavar="SCOPE",
        help=f"scope to request, repeatable (default: {INVOKE_SCOPE_NAME})",
    )


def token_command(args: argparse.Namespace) -> int:
    """Print a bearer token to stdout; errors go to stderr with exit status 1."""
    try:
        token = _token_for(args)
    except (TokenError, LocalCloudError) as error:
        print(f"onnx-lambda token: {error}", file=sys.stderr)
        return 1
    print(token)
    return 0


def _token_for(args: argparse.Namespace) -> str:
    use_cache = not args.no_cache
    flow: AuthFlow = "srp" if args.srp else "password"
    if args.client_credentials:
        if not args.token_url or not args.client_id:
            raise TokenError("--client-credentials needs --token-url and --client-id")
        if args.id_token:
            raise TokenError("client_credentials issues no ID token")
        secret = _secret(args.client_secret_env, f"Client secret for {args.client_id}: ")
        return machine_token(
            args.token_url, args.client_id, secret, args.scopes or [INVOKE_SCOPE_NAME], use_cache=use_cache
        )
    if args.user_pool_client_id:
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise TokenError("a real user pool needs --region (or AWS_REGION)")
        if not args.username:
            raise TokenError("a real user pool needs --username")
        return user_token(
            client_id=args.user_pool_client_id,
            username=args.username,
            password=_secret(args.password_env, f"Password for {args.username}: "),
            region=region,
            flow=flow,
            user_pool_id=args.user_pool_id,
            id_token=args.id_token,
            use_cache=use_cache,
        )
    stack = LocalStack.load(args.state_file or default_state_path())
    username = args.username or stack.username
    if username != stack.username:
        stack = dataclasses.replace(
            stack, username=username, password=_secret(args.password_env, f"Password for {username}: ")
        )
    return dev_user_token(stack, flow=flow, id_token=args.id_token, use_cache=use_cache)


def _secret(variable: str, prompt: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if value:
            return value
    raise TokenError(f"set the environment variable {variable} (secrets are not taken on the command line)")
