"""The local stand-in for AWS: moto's server on loopback, holding the model bucket and a Cognito pool.

:func:`start_moto` runs the server; :func:`bootstrap` creates on it what ``template.yaml`` creates in
AWS (a private, versioned, encrypted bucket; a user pool that only admins add users to, the
``inference/invoke`` resource-server scope, a user app client, a machine client and a dev user), and
saves what a client needs to find it all as :class:`LocalStack` in a 0600 state file. The dev password
is generated here, never written in the repository.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Self

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_s3 import S3Client

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_BUCKET: Final = "onnx-lambda-models-local"
DEFAULT_USERNAME: Final = "dev"
POOL_NAME: Final = "onnx-lambda-local"
RESOURCE_SERVER: Final = "inference"
INVOKE_SCOPE: Final = "invoke"
#: The scope machine clients get; routes accept it (see ``Settings.jwt_scopes``).
INVOKE_SCOPE_NAME: Final = f"{RESOURCE_SERVER}/{INVOKE_SCOPE}"
#: Symbols Cognito's policy counts that are also safe to paste into a shell inside single quotes.
_PASSWORD_SYMBOLS: Final = "-_.=+~@%,:"  # noqa: S105 - an alphabet, not a password
#: moto ignores credentials, but boto3 needs some; these keep any real ones from being used.
_LOCAL_CREDENTIALS: Final = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}  # nosec B105  # moto's stand-in credentials, not secrets
#: The same, as the environment of a process (SAM CLI, a function's container) that talks to moto.
LOCAL_CREDENTIALS_ENVIRONMENT: Final = {key.upper(): value for key, value in _LOCAL_CREDENTIALS.items()}


class LocalCloudError(Exception):
    """The local stack cannot start or be reached; the message says what to do."""


@dataclass(frozen=True, slots=True)
class LocalStack:
    """Where the local S3 and Cognito live and how to sign in to them."""

    endpoint_url: str
    region: str
    bucket: str
    user_pool_id: str
    user_client_id: str
    m2m_client_id: str
    #: What moto writes in ``iss``: the AWS form, not the endpoint.
    issuer: str
    #: Where moto serves the pool's keys: the endpoint, not the issuer.
    jwks_url: str
    username: str
    password: str

    def save(self, path: Path) -> None:
        """Write the state as JSON, readable by the owner only (it holds the dev password)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(path, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> LocalStack:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LocalCloudError(f"no local stack state at {path}: start the local stack with `make serve`") from None
        except (OSError, ValueError) as error:
            raise LocalCloudError(f"cannot read the local stack state at {path}: {error}") from None
        names = [field.name for field in dataclasses.fields(cls)]
        if not isinstance(document, dict) or any(not isinstance(document.get(name), str) for name in names):
            raise LocalCloudError(f"the local stack state at {path} is incomplete: run `make serve` again")
        return cls(**{name: document[name] for name in names})


def default_state_path() -> Path:
    """``$ONNX_LAMBDA_STATE_FILE``, else ``~/.cache/onnx-lambda/local-stack.json``."""
    override = os.environ.get("ONNX_LAMBDA_STATE_FILE")
    if override:
        return Path(override).expanduser()
    return cache_dir() / "local-stack.json"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onnx-lambda"


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 from the first byte."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)  # in case a stale temporary file had wider bits
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def generate_password(length: int = 24) -> str:
    """A password that meets the pool's policy: upper, lower, digit and symbol, from ``secrets``."""
    alphabet = string.ascii_letters + string.digits + _PASSWORD_SYMBOLS
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
            and any(c in _PASSWORD_SYMBOLS for c in password)
        ):
            return password


def bootstrap(
    endpoint_url: str,
    region: str = DEFAULT_REGION,
    *,
    state_path: Path,
    bucket: str = DEFAULT_BUCKET,
    username: str = DEFAULT_USERNAME,
    reuse: bool = True,
) -> LocalStack:
    """Create the bucket, pool, scope, clients and dev user on a running moto server; save the state.

    With ``reuse``, a state file that still matches what the server holds is returned as it is, so
    bootstrapping the same server twice doesn't create a second pool.
    """
    endpoint_url = endpoint_url.rstrip("/")
    if reuse and state_path.exists():
        with contextlib.suppress(LocalCloudError):
            existing = LocalStack.load(state_path)
            same = (existing.endpoint_url, existing.region, existing.bucket, existing.username)
            if same == (endpoint_url, region, bucket, username) and _still_there(existing):
                return existing
    s3 = _client("s3", endpoint_url, region)
    cognito = _client("cognito-idp", endpoint_url, region)
    try:
        _create_model_bucket(s3, bucket, region)
        stack = _create_user_pool(cognito, endpoint_url, region, bucket, username)
    except ClientError as error:
        raise LocalCloudError(f"the local stack at {endpoint_url} refused the set-up: {error}") from None
    except OSError as error:  # botocore's connection errors are OSErrors
        raise LocalCloudError(f"cannot reach the local stack at {endpoint_url}: {error}") from None
    stack.save(state_path)
    return stack


def _client(service: str, endpoint_url: str, region: str) -> Any:
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint_url, region_name=region, config=config, **_LOCAL_CREDENTIALS
    )


def _create_model_bucket(s3: S3Client, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]
        },
    )


def _create_user_pool(
    cognito: CognitoIdentityProviderClient, endpoint_url: str, region: str, bucket: str, username: str
) -> LocalStack:
    pool_id = cognito.create_user_pool(
        PoolName=POOL_NAME,
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 14,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
                "TemporaryPasswordValidityDays": 1,
            }
        },
        AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        MfaConfiguration="OFF",
        UsernameConfiguration={"CaseSensitive": False},
        AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "admin_only"}]},
    )["UserPool"]["Id"]
    cognito.create_resource_server(
        UserPoolId=pool_id,
        Identifier=RESOURCE_SERVER,
        Name=RESOURCE_SERVER,
        Scopes=[{"ScopeName": INVOKE_SCOPE, "ScopeDescription": "call the inference routes"}],
    )
    user_client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="onnx-lambda-user",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        PreventUserExistenceErrors="ENABLED",
        EnableTokenRevocation=True,
    )["UserPoolClient"]["ClientId"]
    m2m_client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="onnx-lambda-machine",
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=[INVOKE_SCOPE_NAME],
        AllowedOAuthFlowsUserPoolClient=True,
        SupportedIdentityProviders=["COGNITO"],
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]["ClientId"]
    password = generate_password()
    cognito.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    return LocalStack(
        endpoint_url=endpoint_url,
        region=region,
        bucket=bucket,
        user_pool_id=pool_id,
        user_client_id=user_client_id,
        m2m_client_id=m2m_client_id,
        issuer=f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
        jwks_url=f"{endpoint_url}/{pool_id}/.well-known/jwks.json",
        username=username,
        password=password,
    )


def _still_there(stack: LocalStack) -> bool:
    cognito = _client("cognito-idp", stack.endpoint_url, stack.region)
    try:
        cognito.describe_user_pool_client(UserPoolId=stack.user_pool_id, ClientId=stack.user_client_id)
        cognito.admin_get_user(UserPoolId=stack.user_pool_id, Username=stack.username)
        _client("s3", stack.endpoint_url, stack.region).head_bucket(Bucket=stack.bucket)
    except (ClientError, OSError):
        return False
    return True


class MotoServer:
    """A moto server subprocess on loopback; a context manager that stops it on exit.

    It runs in the caller's process group, so Ctrl-C in a terminal reaches it too; :meth:`stop`
    then only reaps it.
    """

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, log: IO[bytes] | None) -> None:
        self.process = process
        self.host = host
        self.port = port
        self._log = log

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_seconds: float = 30.0) -> None:
        """Block until the server answers HTTP; :class:`LocalCloudError` if it died or never did."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self.process.poll() is not None:
                raise LocalCloudError(
                    f"moto server exited with code {self.process.returncode} before it was ready on {self.endpoint_url}"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1.0):  # noqa: S310  # nosec B310  # our loopback URL
                    return
            except urllib.error.HTTPError:
                return  # it answered: ready
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise LocalCloudError(
                    f"moto server did not answer on {self.endpoint_url} within {timeout_seconds:.0f} s"
                )
            time.sleep(0.1)

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Terminate (then kill) the server and reap it; safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_seconds)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now.

    SO_REUSEADDR, as uvicorn and moto's server set it: connections of a just-stopped server that linger
    in TIME_WAIT don't stop a new one from listening, so they mustn't fail this check either.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def start_moto(
    host: str = "127.0.0.1", port: int = 5000, *, log_path: Path | None = None, wait: bool = True
) -> MotoServer:
    """Start ``moto_server`` on ``host:port`` (S3, Cognito and the rest on one port).

    A busy port gets a clear :class:`LocalCloudError` instead of a server that dies in the background.
    Its request log goes to ``log_path`` (appended) or nowhere.
    """
    if not port_is_free(host, port):
        raise LocalCloudError(
            f"port {port} on {host} is already in use: a moto server from an earlier run may still be "
            "running; stop it, or choose another port"
        )
    log: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
    command = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    environment = {**os.environ, "MOTO_PORT": str(port)}
    process = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter running moto
        command,
        stdin=subprocess.DEVNULL,
        stdout=log or subprocess.DEVNULL,
        stderr=log or subprocess.DEVNULL,
        env=environment,
    )
    server = MotoServer(process, host, port, log)
    if wait:
        server.wait_ready()
    return server
