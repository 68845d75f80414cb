"""GETs of pinned S3 object versions, signed with SigV4 over ``http.client``: the one call the model store makes.

botocore made this call before. Importing it and building its S3 client took about 150 ms of CPU and
35 MiB of resident memory of every cold start under Lambda's CPU quota (docs/performance.md), for one
operation: GetObject of an object version, whole or a byte range. This module is that operation, with
botocore's standard retry policy (connection errors, 5xx and throttling retried, ``max_attempts`` in all)
and S3's error codes. Credentials come from the environment, as Lambda provides them; only where the
environment has none (a developer's profile) is botocore imported to find them.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from ssl import SSLContext

#: The SHA-256 of an empty payload: what a GET signs as its body.
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
#: What botocore's standard retry mode retries, besides connection errors.
RETRYABLE_STATUSES: Final = frozenset({500, 502, 503, 504})
RETRYABLE_CODES: Final = frozenset(
    {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestThrottled",
        "SlowDown", "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "InternalError",
    }
)  # fmt: skip
#: An error body is a short XML document; never read more of one than this.
_MAX_ERROR_BODY: Final = 64 * 1024
_XML_ENTITIES: Final = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}


class S3Error(Exception):
    """S3 answered with an error: its status, its code (the status when the body has none) and details."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, str] | None = None) -> None:
        super().__init__(f"{code} ({status}): {message}" if message else f"{code} ({status})")
        self.status = status
        self.code = code
        self.details = details or {}


class S3ConnectionError(Exception):
    """No answer from S3 (refused, reset, timed out), after every attempt."""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str = ""
    token: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(access_key={self.access_key!r})"


def default_credentials() -> Credentials:
    """The environment's credentials (Lambda sets the role's there), else botocore's chain, imported only then."""
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        return Credentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)
    import botocore.session  # a profile, SSO, a container's role: not on Lambda's path

    found = botocore.session.get_session().get_credentials()
    if found is None:
        raise S3ConnectionError("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile")
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key or "", frozen.secret_key or "", frozen.token)


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class S3Response:
    """A successful GET: its length and range, and its body, read with :meth:`readinto` then :meth:`close`."""

    def __init__(self, response: http.client.HTTPResponse, release: Callable[[bool], None]) -> None:
        self._response = response
        self._release = release
        self.status = response.status
        self.content_length = int(response.headers.get("Content-Length") or 0)
        self.content_range = response.headers.get("Content-Range") or ""

    def readinto(self, buffer: memoryview) -> int:
        return self._response.readinto(buffer)

    def close(self) -> None:
        """Give the connection back for the next GET if the body was read to its end; else close it."""
        complete = self._response.isclosed()
        self._response.close()
        self._release(complete)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a GET goes: the connection's scheme and host, the request's path and query, and the Host header."""

    scheme: str
    netloc: str
    path: str
    query: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}?{self.query}"


class S3Client:
    """GetObject of object versions; safe to share between threads (each GET takes a connection of its own)."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        credentials: Credentials | None = None,
        timeout_seconds: float = 60.0,
        max_attempts: int = 4,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region or default_region()
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self._credentials = credentials
        #: Seconds to wait before attempt ``n + 1``: botocore's full jitter, from 0.1 s doubling, at most 2 s.
        self._backoff = backoff or (lambda attempt: random.uniform(0, min(2.0, 0.1 * 2**attempt)))  # noqa: S311  # nosec B311  # jitter
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._ssl_context: SSLContext | None = None

    def get_object(self, bucket: str, key: str, version_id: str, byte_range: str | None = None) -> S3Response:
        """GET one version, or ``byte_range`` (``bytes=a-b``) of it; retried as botocore's standard mode does."""
        target = self._target(bucket, key, version_id)
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                time.sleep(self._backoff(attempt - 1))
            try:
                return self._get(target, byte_range)
            except S3Error as error:
                if error.status not in RETRYABLE_STATUSES and error.code not in RETRYABLE_CODES:
                    raise
                last = error
            except S3ConnectionError as error:
                last = error
        assert last is not None  # max_attempts >= 1
        raise last

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # --- one attempt -------------------------------------------------------------------------------

    def _get(self, target: _Target, byte_range: str | None) -> S3Response:
        connection = self._connection(target)
        headers = self._signed_headers(target, byte_range)
        try:
            connection.request("GET", f"{target.path}?{target.query}", headers=headers)
            response = connection.getresponse()
        except TimeoutError:
            connection.close()
            raise S3ConnectionError(f"Read timeout on endpoint URL: {target.url}") from None
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise S3ConnectionError(
                f"Connection was closed before a response came from endpoint URL: {target.url} ({error!r})"
            ) from None
        if response.status in (200, 206):
            return S3Response(response, lambda complete: self._release(connection, reusable=complete))
        try:
            body = response.read(_MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException):
            body = b""
        self._release(connection, reusable=response.isclosed())
        raise _error(response.status, body)

    def _connection(self, target: _Target) -> http.client.HTTPConnection:
        with self._lock:
            for index, idle in enumerate(self._idle):
                if (idle.host, idle.port) == _host_port(target):
                    return self._idle.pop(index)
        host, port = _host_port(target)
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=self.timeout_seconds, context=self._context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout_seconds)
        try:
            connection.connect()
        except OSError as error:
            connection.close()
            raise S3ConnectionError(f"Could not connect to the endpoint URL: {target.url} ({error!r})") from None
        return connection

    def _release(self, connection: http.client.HTTPConnection, *, reusable: bool) -> None:
        if not reusable:
            connection.close()
            return
        with self._lock:
            self._idle.append(connection)

    def _context(self) -> SSLContext:
        with self._lock:
            if self._ssl_context is None:
                import ssl  # only for https: the local S3 stand-ins speak plain http

                self._ssl_context = ssl.create_default_context()
            return self._ssl_context

    # --- addressing and signing ------------------------------------------------------------------

    def _target(self, bucket: str, key: str, version_id: str) -> _Target:
        path = "/" + quote(key, safe="/~")
        query = "versionId=" + quote(version_id, safe="~")
        if self.endpoint_url:
            # A stand-in (moto, MinIO) at its own URL: path-style addressing, as botocore uses there.
            endpoint = urlsplit(self.endpoint_url)
            prefix = endpoint.path.rstrip("/")
            return _Target(endpoint.scheme, endpoint.netloc, f"{prefix}/{quote(bucket, safe='')}{path}", query)
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        if "." in bucket:  # a dotted name doesn't match the wildcard certificate: path-style
            return _Target("https", f"s3.{self.region}.{suffix}", f"/{bucket}{path}", query)
        return _Target("https", f"{bucket}.s3.{self.region}.{suffix}", path, query)

    def _signed_headers(self, target: _Target, byte_range: str | None) -> dict[str, str]:
        """Signature Version 4 headers of a GET (AWS's "Authenticating requests" reference)."""
        credentials = self._credentials
        if credentials is None:
            credentials = self._credentials = default_credentials()
        amz_date = amz_date_now()
        headers = {"host": target.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
        if byte_range is not None:
            headers["range"] = byte_range
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        signed_headers = ";".join(names)
        canonical = "\n".join(
            [
                "GET",
                target.path,
                target.query,
                "".join(f"{name}:{headers[name].strip()}\n" for name in names),
                signed_headers,
                EMPTY_SHA256,
            ]
        )
        scope = f"{amz_date[:8]}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = ("AWS4" + credentials.secret_key).encode()
        for part in (amz_date[:8], self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        headers["user-agent"] = "onnx-lambda"
        return headers


def amz_date_now() -> str:
    """The request time SigV4 signs, ``YYYYMMDDTHHMMSSZ`` in UTC."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _host_port(target: _Target) -> tuple[str, int]:
    parts = urlsplit(f"{target.scheme}://{target.netloc}")
    return parts.hostname or "", parts.port or (443 if target.scheme == "https" else 80)


def _error(status: int, body: bytes) -> S3Error:
    """S3's XML error document as an :class:`S3Error` (a body without one: the status is the code)."""
    text = body.decode("utf-8", "replace")
    fields = {name: _unescape(value) for name, value in re.findall(r"<(\w+)>([^<]*)</\1>", text)}
    code = fields.pop("Code", "") or str(status)
    return S3Error(status, code, fields.pop("Message", ""), fields)


def _unescape(value: str) -> str:
    return re.sub(r"&(?:lt|gt|quot|apos|amp);", lambda match: _XML_ENTITIES[match.group()], value)
