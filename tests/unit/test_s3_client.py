"""The model store's S3 client (onnx_lambda.s3): signed as botocore signs, addressed as botocore addresses, and
retried as botocore's standard mode retries, against a real HTTP server on loopback.

The references are botocore itself: its SigV4 signer over the same request at the same instant, and the URL
its S3 client sends for the same GetObject. moto checks the signatures end to end in tests/faults
(test_access_denied: a server that enforces IAM answers only correctly signed requests).
"""

from __future__ import annotations

import datetime
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials as BotocoreCredentials

from onnx_lambda import s3
from onnx_lambda.s3 import Credentials, S3Client, S3ConnectionError, S3Error

INSTANT = datetime.datetime(2026, 12, 4, 12, 34, 56)
KEYS = ["models/minilm/1-0123456789abcdef/model.onnx", "models/a b/ü+x=y;z(1)*~.onnx", "weird/%41/'quote'/!"]
VERSIONS = ["3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nrjfkd", "null", "v/1=2&3"]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "amz_date_now", lambda: INSTANT.strftime("%Y%m%dT%H%M%SZ"))
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *args, **kwargs: INSTANT)


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("version_id", VERSIONS)
@pytest.mark.parametrize(("token", "byte_range"), [(None, None), ("session-token/+=", "bytes=0-1023")])
def test_the_signature_is_botocores(key: str, version_id: str, token: str | None, byte_range: str | None) -> None:
    client = S3Client(
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
    )
    target = client._target("models-bucket", key, version_id)
    ours = client._signed_headers(target, byte_range)

    request = AWSRequest(method="GET", url=target.url, headers={})
    if byte_range is not None:
        request.headers["Range"] = byte_range
    signer = S3SigV4Auth(
        BotocoreCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "s3", "eu-west-1"
    )
    signer.add_auth(request)
    assert request.headers["X-Amz-Date"] == ours["x-amz-date"]
    assert request.headers["X-Amz-Content-SHA256"] == ours["x-amz-content-sha256"]
    assert ours["authorization"] == request.headers["Authorization"]


def _botocore_url(key: str, version_id: str, **client_options: Any) -> str:
    """The URL botocore's own S3 client sends for this GetObject (captured before it is sent)."""
    session = botocore.session.get_session()
    client: Any = session.create_client(  # botocore's stubs type it as BaseClient
        "s3",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(response_checksum_validation="when_required"),
        **client_options,
    )
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> Any:
        sent.append(request.url)
        return AWSResponse(request.url, 200, {"Content-Length": "0"}, None)  # type: ignore[arg-type]  # a dict will do

    client.meta.events.register("before-send.s3.GetObject", capture)
    client.get_object(Bucket="models-bucket", Key=key, VersionId=version_id)
    return sent[0]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("version_id", VERSIONS)
def test_the_url_is_botocores(key: str, version_id: str) -> None:
    local = S3Client(endpoint_url="http://127.0.0.1:9000", region="eu-west-1", credentials=Credentials("a", "b"))
    assert local._target("models-bucket", key, version_id).url == _botocore_url(
        key, version_id, endpoint_url="http://127.0.0.1:9000", region_name="eu-west-1"
    )
    aws = S3Client(region="eu-west-1", credentials=Credentials("a", "b"))
    assert aws._target("models-bucket", key, version_id).url == _botocore_url(key, version_id, region_name="eu-west-1")


# --- behaviour over real HTTP -------------------------------------------------------------------


@dataclass
class Script:
    """What the loopback server answers, in order (the last answer repeats), and what it saw."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            script.connections.add(self.client_address)
            script.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            index = min(len(script.requests), len(script.answers)) - 1
            status, headers, body = script.answers[index]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def client_for(url: str, **options: Any) -> S3Client:
    return S3Client(
        endpoint_url=url, credentials=Credentials("AKIDEXAMPLE", "secret"), backoff=lambda _: 0.0, **options
    )


def read_all(response: s3.S3Response) -> bytes:
    buffer = bytearray(response.content_length)
    view, filled = memoryview(buffer), 0
    while filled < len(buffer):
        filled += response.readinto(view[filled:])
    response.close()
    return bytes(buffer)


def error_document(code: str, message: str = "", **details: str) -> bytes:
    extra = "".join(f"<{name}>{value}</{name}>" for name, value in details.items())
    document = f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}</Error>"
    return f"<?xml version='1.0' encoding='UTF-8'?>{document}".encode()


def test_a_version_and_a_range_over_one_kept_alive_connection(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(200, {}, b"whole object"), (206, {"Content-Range": "bytes 0-4/12"}, b"whole")]
    client = client_for(url)
    whole = client.get_object("bkt", "k/model.onnx", "v1")
    assert (whole.status, read_all(whole)) == (200, b"whole object")
    part = client.get_object("bkt", "k/model.onnx", "v1", "bytes=0-4")
    assert (part.status, part.content_range, read_all(part)) == (206, "bytes 0-4/12", b"whole")
    assert [request["path"] for request in script.requests] == ["/bkt/k/model.onnx?versionId=v1"] * 2
    assert script.requests[1]["range"] == "bytes=0-4"
    assert "range" not in script.requests[0]
    assert all(
        request["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") for request in script.requests
    )
    assert len(script.connections) == 1


def test_throttling_and_5xx_are_retried_up_to_the_attempts(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [
        (503, {}, error_document("SlowDown")),
        (500, {}, error_document("InternalError")),
        (200, {}, b"ok"),
    ]
    assert read_all(client_for(url).get_object("bkt", "k", "v")) == b"ok"
    assert len(script.requests) == 3

    script.requests.clear()
    script.answers = [(503, {}, error_document("SlowDown", "Please reduce your request rate."))]
    with pytest.raises(S3Error) as raised:
        client_for(url, max_attempts=3).get_object("bkt", "k", "v")
    assert (raised.value.status, raised.value.code) == (503, "SlowDown")
    assert "Please reduce your request rate." in str(raised.value)
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (404, error_document("NoSuchVersion", "The specified version does not exist."), "NoSuchVersion"),
        (403, error_document("AccessDenied", "Access Denied"), "AccessDenied"),
        (403, b"", "403"),
        (400, error_document("InvalidArgument", "a &lt;bad&gt; &amp; &quot;argument&quot;"), "InvalidArgument"),
    ],
)
def test_other_errors_are_not_retried(server: tuple[str, Script], status: int, body: bytes, code: str) -> None:
    url, script = server
    script.answers = [(status, {"Content-Type": "application/xml"}, body), (200, {}, b"not reached")]
    with pytest.raises(S3Error) as raised:
        client_for(url).get_object("bkt", "k", "v")
    assert (raised.value.status, raised.value.code) == (status, code)
    assert len(script.requests) == 1
    if code == "InvalidArgument":
        assert 'a <bad> & "argument"' in str(raised.value)


def test_an_invalid_range_carries_the_objects_actual_size(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [
        (416, {}, error_document("InvalidRange", "The requested range is not satisfiable", ActualObjectSize="12"))
    ]
    with pytest.raises(S3Error) as raised:
        client_for(url).get_object("bkt", "k", "v", "bytes=100-199")
    assert raised.value.details["ActualObjectSize"] == "12"


def test_a_server_that_never_answers_times_out_on_every_attempt() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepted by the kernel, never answered
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(S3ConnectionError, match="Read timeout on endpoint URL"):
            client_for(url, timeout_seconds=0.2, max_attempts=3).get_object("bkt", "k", "v")
        accepted = 0
        listener.settimeout(0)
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            connection.close()
            accepted += 1
    assert accepted == 3


def test_a_refused_connection_says_so() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
        with pytest.raises(S3ConnectionError, match="Could not connect to the endpoint URL"):
            client_for(url, max_attempts=2).get_object("bkt", "k", "v")


def test_credentials_come_from_the_environment_with_the_session_token(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = server
    script.answers = [(200, {}, b"ok")]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-of-the-role")
    client = S3Client(endpoint_url=url)
    read_all(client.get_object("bkt", "k", "v"))
    (request,) = script.requests
    assert request["x-amz-security-token"] == "token-of-the-role"
    assert "x-amz-security-token" in request["authorization"].split("SignedHeaders=")[1]
    assert request["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/")
    assert "secret" not in repr(client._credentials)
