"""One cold start inside the function's container, timed from exec; standard library only.

``python cold_probe.py ours|file|s3 SPEC_JSON`` runs in the function's image, under Lambda's limits, and
prints one JSON line. It starts the measured process itself, so the three sides share one clock and one
origin (the ``exec``):

* ``ours``: the image's runtime as Lambda starts it, ``python -m awslambdaric <CMD>``, against a minimal
  Lambda Runtime API served here. Init is exec to the runtime's first ``/next``, as Lambda defines Init
  Duration; the event goes out with a sampled trace header, and X-Ray's UDP lands on a socket here, so
  tracing runs as deployed and the init stages it reports are read from its segments.
* ``file``: a bare process that imports onnxruntime and tokenizers, creates the session from the model
  file, loads the tokenizer, tokenizes one sentence and runs it.
* ``s3``: the same after fetching the same objects (model and tokenizer, pinned versions) from the same
  S3 with boto3, then loading them from bytes.

Resident memory and CPU time after init are the measured process's (``VmRSS``, utime + stime): read here
at the first ``/next`` for ``ours``, by the process itself for the bare ones, before the first request
either way.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _cpu_ms(pid: str = "self") -> float:
    """CPU time (user + system) a process has used so far, in milliseconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _usage(pid: str = "self") -> dict[str, float]:
    """A process's resident memory (VmRSS) and its peak (VmHWM) in MiB, and the CPU time it has used."""
    values: dict[str, float] = {"cpu_ms": _cpu_ms(pid)}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mib": values.get("VmRSS", 0.0), "peak_mib": values.get("VmHWM", 0.0), "cpu_ms": values["cpu_ms"]}


# --- the bare references (run as the child; nothing imported above but json, os, sys, time) ----------------


def _session_options(ort: Any, spec: dict[str, Any]) -> Any:
    options = ort.SessionOptions()
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options.graph_optimization_level = levels[spec.get("graph_optimization", "all")]
    if spec.get("intra_op_threads"):
        options.intra_op_num_threads = int(spec["intra_op_threads"])
    if spec.get("allow_spinning") is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", str(spec["allow_spinning"]))
    return options


def bare(side: str, spec: dict[str, Any]) -> None:
    """The reference: fetch (``s3``) or open (``file``) the model, load it, answer one sentence."""
    if side == "s3":
        import boto3

        s3 = boto3.client("s3", endpoint_url=spec["endpoint_url"])
        objects = {
            name: s3.get_object(Bucket=spec["bucket"], Key=key, VersionId=version)["Body"].read()
            for name, (key, version) in spec["objects"].items()
        }
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = _session_options(ort, spec)
    if side == "s3":
        session = ort.InferenceSession(objects["model"], options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_str(objects["tokenizer"].decode())
    else:
        session = ort.InferenceSession(spec["model_path"], options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(spec["tokenizer_path"])
    tokenizer.enable_truncation(max_length=spec["max_length"])
    tokenizer.enable_padding()
    initialized = time.monotonic()
    usage = _usage()
    names = {node.name for node in session.get_inputs()}
    encoding = tokenizer.encode_batch([spec["text"]])
    feeds = {
        "input_ids": np.array([e.ids for e in encoding], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoding], dtype=np.int64),
    }
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.array([e.type_ids for e in encoding], dtype=np.int64)
    vector = session.run(None, feeds)[0]
    responded = time.monotonic()
    print(json.dumps({"initialized": initialized, "responses": [responded], "at_init": usage, "dim": vector.shape[-1]}))


# --- the harness ----------------------------------------------------------------------------------------------


def _runtime_api(events: list[dict[str, Any]], record: dict[str, Any], pid: list[int]) -> tuple[Any, int]:
    """A Lambda Runtime API for one process: hands out ``events`` in order, notes when each answer came."""
    import http.server
    import secrets
    import threading

    done = threading.Event()
    record["done"] = done

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        #: Headers and body go out as two writes: with Nagle's algorithm, a keep-alive reply waits 40 ms for an ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            now = time.monotonic()
            if not self.path.endswith("/runtime/invocation/next"):
                self._reply(404, b"{}")
                return
            served = record.setdefault("served", 0)
            record.setdefault("next_at", []).append(now)
            if served == 0:
                record["at_init"] = _usage(str(pid[0]))
            if served >= len(events):
                record["after"] = _usage(str(pid[0]))
                done.set()
                threading.Event().wait(60)  # the harness ends the process meanwhile
                return
            record["served"] = served + 1
            trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=1"
            self._reply(
                200,
                json.dumps(events[served]).encode(),
                {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": f"cold-{served}",
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 29_000),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:onnx-lambda",
                    "Lambda-Runtime-Trace-Id": trace,
                },
            )

        def do_POST(self) -> None:
            now = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/response"):
                record.setdefault("responses", []).append(now)
                record.setdefault("bodies", []).append(json.loads(body or b"null"))
            else:  # init/error or invocation/<id>/error
                record["error"] = body.decode(errors="replace")[-2000:]
                done.set()
            self._reply(202, b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _xray_sink(segments: list[dict[str, Any]]) -> int:
    """A UDP socket where the X-Ray SDK sends its segments (as to the daemon); returns its port."""
    import socket
    import threading

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))

    def receive() -> None:
        while True:
            data = sink.recv(65536)
            _, _, document = data.partition(b"\n")  # '{"format": "json", "version": 1}\n{...}'
            try:
                segments.append(json.loads(document))
            except ValueError:
                segments.append({"unparsed": len(data)})

    threading.Thread(target=receive, daemon=True).start()
    return int(sink.getsockname()[1])


def _xray_stages(segments: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds of the subsegments named ``## ...`` (the init stages, the handler), as X-Ray shows them."""
    stages: dict[str, float] = {}

    def walk(segment: dict[str, Any]) -> None:
        name = segment.get("name", "")
        if name.startswith("## ") and "end_time" in segment and "start_time" in segment:
            stages[name[3:]] = round((segment["end_time"] - segment["start_time"]) * 1000, 1)
        for child in segment.get("subsegments", []):
            walk(child)

    for segment in segments:
        walk(segment)
    return stages


def harness(side: str, spec: dict[str, Any]) -> dict[str, Any]:
    import subprocess

    environment = dict(os.environ)
    record: dict[str, Any] = {}
    segments: list[dict[str, Any]] = []
    pid: list[int] = [0]
    if side == "ours":
        _, port = _runtime_api(spec["events"], record, pid)
        environment |= {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "_HANDLER": spec["handler"],
            "PYTHONPATH": f"{environment['LAMBDA_TASK_ROOT']}:/var/runtime",
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{_xray_sink(segments)}",
        }
        command = [sys.executable, "-m", "awslambdaric", spec["handler"]]
    else:
        command = [sys.executable, os.path.abspath(__file__), "bare", side, json.dumps(spec)]
    started = time.monotonic()
    child = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    pid[0] = child.pid
    if side == "ours":
        finished = record["done"].wait(120)
        record["after"] = record.get("after") or _usage(str(child.pid))
        child.kill()
        out, err = child.communicate()
        if not finished or "error" in record or len(record.get("responses", [])) < len(spec["events"]):
            raise SystemExit(f"ours failed: {record.get('error')}\n{err.decode(errors='replace')[-3000:]}")
        time.sleep(0.05)  # the last datagrams
        statuses = [body.get("statusCode") for body in record["bodies"]]
        result = {
            "init_ms": (record["next_at"][0] - started) * 1000,
            "responses_ms": [(at - started) * 1000 for at in record["responses"]],
            "durations_ms": [
                (end - begin) * 1000 for begin, end in zip(record["next_at"], record["responses"], strict=False)
            ],
            "statuses": statuses,
            "at_init": record["at_init"],
            "after_the_events": record["after"],
            "xray_datagrams": len(segments),
            "xray_stages_ms": _xray_stages(segments),
            "log_lines": out.decode(errors="replace").count("\n"),
        }
    else:
        out, err = child.communicate(timeout=120)
        if child.returncode != 0:
            raise SystemExit(f"{side} failed: {err.decode(errors='replace')[-3000:]}")
        reported = json.loads(out.decode().strip().splitlines()[-1])
        result = {
            "init_ms": (reported["initialized"] - started) * 1000,
            "responses_ms": [(at - started) * 1000 for at in reported["responses"]],
            "at_init": reported["at_init"],
            "dim": reported["dim"],
        }
    result["side"] = side
    result["first_response_ms"] = result["responses_ms"][0]
    return result


def main(argv: list[str]) -> int:
    if argv[0] == "bare":
        bare(argv[1], json.loads(argv[2]))
        return 0
    print(json.dumps(harness(argv[0], json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
