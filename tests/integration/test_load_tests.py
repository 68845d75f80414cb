"""The load test against the real local stack: every request of the mix gets what it expects, and a short
locust run (real tokens from the local Cognito, real HTTP) passes the SLO's correctness checks."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import LocalService

pytestmark = [pytest.mark.integration, pytest.mark.models]

ROOT = Path(__file__).resolve().parents[2]
LOAD_TESTS = ROOT / "load_tests"
sys.path.insert(0, str(LOAD_TESTS))

import check_slo  # noqa: E402 - load_tests/ is a directory of scripts, not a package
import scenarios  # noqa: E402


def send(service: LocalService, planned: scenarios.PlannedRequest) -> httpx.Response:
    headers = dict(planned.headers)
    if planned.authenticated:
        headers["authorization"] = f"Bearer {service.token}"
    return httpx.request(planned.method, service.url + planned.path, content=planned.body, headers=headers, timeout=30)


def test_every_request_of_the_mix_gets_what_it_expects(local_service: LocalService) -> None:
    rng = random.Random(2026)
    for builder in scenarios.MIX:
        if builder is scenarios.invalid:
            continue
        for _ in range(5):
            planned = builder(rng)
            response = send(local_service, planned)
            assert planned.problem(response.status_code, response.content) is None, (planned.name, response.text)
    for case in scenarios.INVALID_CASES:
        response = send(local_service, case)
        assert case.problem(response.status_code, response.content) is None, (case.name, response.text)
        assert "error" in response.json(), case.name


def test_a_short_locust_run_is_correct_and_fetches_one_token_per_user(
    local_service: LocalService, tmp_path: Path
) -> None:
    prefix = tmp_path / "run"
    users = 4
    completed = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(LOAD_TESTS / "locustfile.py"), "--headless",
            "--host", local_service.url, "--users", str(users), "--spawn-rate", str(users), "--run-time", "8s",
            "--stop-timeout", "10", "--json-file", str(prefix), "--csv", str(prefix), "--only-summary",
        ],
        cwd=ROOT,
        env={**local_service.env, "LOAD_WAIT_MIN": "0.05", "LOAD_WAIT_MAX": "0.2"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert prefix.with_suffix(".json").exists(), completed.stderr[-3000:]
    routes = check_slo.read_json_report(prefix.with_suffix(".json"))
    # Correctness only: latency limits on a shared test machine would be timed assertions.
    slo = {
        "max_error_rate": 0.0,
        "min_requests_per_route": 1,
        "min_invalid_requests": 0,
        "max_token_fetches_per_user": 1,
        "routes": {"POST /v1/embeddings (1 text)": {}},
    }
    verdicts = check_slo.evaluate(routes, slo, users)
    assert all(v.ok for v in verdicts), [v for v in verdicts if not v.ok]
    tokens = [r for r in routes if r.method == check_slo.TOKEN_TYPE]
    assert sum(r.requests for r in tokens) == users  # one per user, none per request
    assert sum(r.requests for r in routes if r.method != check_slo.TOKEN_TYPE) > 4 * users
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(prefix.with_suffix(".json").read_text())
