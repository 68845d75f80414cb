"""The image as Lambda runs it: size, Init Duration, warm latency and peak memory under Lambda's limits.

The function's image (``make image``) runs under the template's MemorySize as its memory cap and
MemorySize/1769 vCPU as a CFS quota, read-only but /tmp, as an unprivileged user, fetching its models
from the local S3 in a container. Its own entrypoint starts the Runtime Interface Emulator, whose
``INIT REPORT`` line gives the Init Duration and whose ``REPORT`` lines give each invocation's Duration, as
Lambda's would. Peak memory is the container's cgroup high-water mark: unlike Lambda's "Max Memory Used"
it also counts /tmp (a tmpfs here), so the RSS after the warm requests is reported beside it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

import numpy as np

from onnx_lambda_tools.local import containers, sam_local

#: One short sentence, as API Gateway would deliver it with a verified machine token.
EVENT: Final = containers.ROOT / "events" / "embeddings.json"
#: The emulator's reports, as Lambda's: Init Duration, and each invocation's Duration.
INIT_REPORT: Final = re.compile(r"INIT REPORT\(durationMs: ([\d.]+)\)")
DURATION_REPORT: Final = re.compile(
    r"^REPORT RequestId: \S+\s+(?:Init Duration: [\d.]+ ms\s+)?Duration: ([\d.]+) ms", re.MULTILINE
)


def _invoke(url: str) -> float:
    request = urllib.request.Request(url, data=EVENT.read_bytes(), method="POST")  # noqa: S310 - loopback
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310  # nosec B310  # loopback
        document = json.loads(response.read())
    elapsed = (time.perf_counter() - started) * 1000
    if document.get("statusCode") != 200:
        raise RuntimeError(f"the function answered {document.get('statusCode')}: {document.get('body')!r:.300}")
    return elapsed


def _cgroup_file(container_id: str, v1: str, v2: str) -> Path | None:
    for candidate in (
        Path(f"/sys/fs/cgroup/memory/docker/{container_id}/{v1}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/{v2}"),
    ):
        if candidate.exists():
            return candidate
    return None


def _memory(container_id: str) -> dict[str, float | None]:
    peak = _cgroup_file(container_id, "memory.max_usage_in_bytes", "memory.peak")
    stat = _cgroup_file(container_id, "memory.stat", "memory.stat")
    rss = None
    if stat is not None:
        fields = dict(line.split() for line in stat.read_text().splitlines())
        rss = int(fields.get("total_rss", fields.get("rss", fields.get("anon", 0))))
    return {
        "peak_mib": round(int(peak.read_text()) / 2**20, 1) if peak else None,
        "rss_mib": round(rss / 2**20, 1) if rss is not None else None,
    }


def measure(models_dir: Path, *, cold_starts: int, warm_requests: int) -> dict[str, Any]:
    image = containers.build_image()
    base = containers.standin_base(containers.host_architecture())
    image_bytes = int(containers.docker("image", "inspect", "-f", "{{.Size}}", image))
    base_bytes = int(containers.docker("image", "inspect", "-f", "{{.Size}}", base))
    _, env_file = sam_local.prepare(models_dir, containers.DEFAULT_MOTO_HOST_PORT, verify_tokens=False)
    variables = json.loads(env_file.read_text())[sam_local.FUNCTION]
    memory_mb = sam_local.template_memory_size()
    limits = containers.LambdaLimits(memory_mb)
    environment = containers.function_environment(variables, memory_mb)

    inits: list[float] = []
    first_requests: list[float] = []
    warm: list[float] = []
    durations: list[float] = []
    memory: dict[str, float | None] = {}
    for attempt in range(cold_starts):
        name = "onnx-lambda-bench"
        with containers.function_container(image, environment, limits, name=name) as url:
            first_requests.append(_invoke(url))
            if attempt == cold_starts - 1:
                warm = [_invoke(url) for _ in range(warm_requests)]
                container_id = containers.docker("inspect", "-f", "{{.Id}}", name).strip()
                memory = _memory(container_id)
            logs = containers.container_logs(name)
            init = INIT_REPORT.search(logs)
            if init is None:
                raise RuntimeError(f"no INIT REPORT in the emulator's log:\n{logs[-2000:]}")
            inits.append(float(init.group(1)))
            if attempt == cold_starts - 1:
                durations = [float(match) for match in DURATION_REPORT.findall(logs)][1:]

    def percentile(values: list[float], q: float) -> float:
        return float(np.percentile(np.asarray(values), q))

    return {
        "memory_mb": memory_mb,
        "cpus": limits.cpus,
        "image_mb": round(image_bytes / 1e6, 1),
        "added_to_base_mb": round((image_bytes - base_bytes) / 1e6, 1),
        "init_duration_ms": round(percentile(inits, 50), 1),
        "init_duration_all_ms": [round(value, 1) for value in inits],
        "first_request_ms": round(percentile(first_requests, 50), 1),
        "warm_p50_ms": round(percentile(warm, 50), 2),
        "warm_p99_ms": round(percentile(warm, 99), 2),
        "duration_p50_ms": round(percentile(durations, 50), 2) if durations else None,
        "duration_p99_ms": round(percentile(durations, 99), 2) if durations else None,
        **memory,
    }
