"""The load test's own logic: token refresh near expiry only, and the SLO check's verdicts and exit codes."""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path

import pytest

LOAD_TESTS = Path(__file__).resolve().parents[2] / "load_tests"
sys.path.insert(0, str(LOAD_TESTS))

import bearer  # noqa: E402 - load_tests/ is a directory of scripts, not a package
import check_slo  # noqa: E402
import scenarios  # noqa: E402


def jwt_expiring_at(expiry: float, marker: str = "") -> str:
    def part(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'exp': expiry, 'jti': marker})}.signature"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_is_fetched_once_and_refreshed_only_near_expiry():
    clock = Clock(1_000.0)
    issued: list[bool] = []

    def fetch(fresh: bool) -> str:
        issued.append(fresh)
        return jwt_expiring_at(clock.now + 3600, str(len(issued)))

    token = bearer.BearerToken(bearer.TokenSource("test", fetch), refresh_margin=300, clock=clock)
    first = token.current()
    for step in range(1, 3300, 10):  # 55 minutes of requests, one every 10 s
        clock.now = 1_000.0 + step
        assert token.current() == first
    assert issued == [False]
    clock.now = 1_000.0 + 3301  # under 300 s left: refresh
    assert token.current() != first
    assert token.fetches == 2


def test_a_cached_token_too_close_to_expiry_is_replaced_by_a_fresh_one():
    clock = Clock(0.0)
    calls: list[bool] = []

    def fetch(fresh: bool) -> str:
        calls.append(fresh)
        return jwt_expiring_at(3600 if fresh else 100)  # the cache hands out one with 100 s left

    token = bearer.BearerToken(bearer.TokenSource("test", fetch), refresh_margin=300, clock=clock)
    assert bearer.token_expiry(token.current()) == 3600
    assert calls == [False, True]


def test_a_static_token_is_used_until_it_expires_and_failures_back_off():
    clock = Clock(0.0)
    static = jwt_expiring_at(200)
    token = bearer.BearerToken(bearer.TokenSource("env", lambda fresh: static, refreshable=False), clock=clock)
    assert token.current() == static  # inside the refresh margin already, but it can't be refreshed
    clock.now = 201
    with pytest.raises(bearer.TokenUnavailable, match="expired"):
        token.current()

    attempts: list[float] = []

    def broken(fresh: bool) -> str:
        attempts.append(clock.now)
        raise OSError("token endpoint down")

    failing = bearer.BearerToken(bearer.TokenSource("down", broken), clock=clock)
    with pytest.raises(OSError, match="down"):
        failing.current()
    with pytest.raises(bearer.TokenUnavailable, match="last attempt failed"):
        failing.current()  # within RETRY_AFTER_SECONDS: no second call to the endpoint
    clock.now += bearer.RETRY_AFTER_SECONDS
    with pytest.raises(OSError, match="down"):
        failing.current()
    assert len(attempts) == 2


def test_the_token_source_follows_the_environment():
    assert not bearer.token_source_from_environment({"ONNX_LAMBDA_TOKEN": "a.b.c"}).refreshable
    with pytest.raises(bearer.TokenUnavailable, match="CLIENT_ID"):
        bearer.token_source_from_environment({"ONNX_LAMBDA_TOKEN_URL": "https://x.example/oauth2/token"})
    assert "local stack" in bearer.token_source_from_environment({}).description
    with pytest.raises(bearer.TokenUnavailable, match="exp"):
        bearer.token_expiry("not-a-jwt")


def test_the_mix_is_a_percentage_and_every_request_names_its_expectation():
    assert sum(scenarios.MIX.values()) == 100
    assert scenarios.MIX[scenarios.invalid] == 3
    rng = random.Random(7)
    for builder in scenarios.MIX:
        planned = builder(rng)
        assert planned.method in {"GET", "POST"}
        assert planned.path.startswith("/v")
    statuses = {case.expected_status for case in scenarios.INVALID_CASES}
    assert statuses == {400, 401, 404, 413, 415}
    assert all(case.name.startswith(scenarios.INVALID_PREFIX) for case in scenarios.INVALID_CASES)
    wrong = scenarios.embed_one(rng)
    assert wrong.problem(500, b"{}") is not None
    assert wrong.problem(200, b'{"data": []}') == "expected 1 embeddings"


def route(name: str, times: dict[float, int], failures: int = 0, method: str = "POST") -> dict[str, object]:
    return {
        "name": name,
        "method": method,
        "num_requests": sum(times.values()),
        "num_failures": failures,
        "response_times": {str(k): v for k, v in times.items()},
    }


SLO = {
    "max_error_rate": 0.0,
    "min_requests_per_route": 10,
    "min_invalid_requests": 2,
    "max_token_fetches_per_user": 2,
    "routes": {"POST /a": {"p95_ms": 50, "p99_ms": 100}},
}


def test_percentiles_follow_locusts_definition():
    # locust's rule: the largest response time t such that at most (1 - percent) of requests took longer than
    # the next smaller one, i.e. walk down from the slowest until no more than N x percent requests remain.
    stats = check_slo.RouteStats("POST", "x", 100, 0, {1.0: 90, 20.0: 5, 40.0: 4, 300.0: 1})
    assert stats.percentile(0.50) == 1.0
    assert stats.percentile(0.90) == 20.0  # 300, 40 and 20 walked: 90 remain <= 90
    assert stats.percentile(0.95) == 40.0  # 300 and 40 walked: 95 remain <= 95
    assert stats.percentile(0.99) == 300.0  # 300 walked: 99 remain <= 99


def test_a_run_within_the_slo_passes(tmp_path):
    report = tmp_path / "run"
    entries = [
        route("POST /a", {2: 95, 40: 4, 90: 1}),
        route("invalid: unknown model (404)", {1: 3}),
        route("token fetch", {80: 4}, method="TOKEN"),
    ]
    report.with_suffix(".json").write_text(json.dumps(entries))
    slo = tmp_path / "slo.json"
    slo.write_text(json.dumps({"profiles": {"local": SLO}}))
    assert check_slo.main(["--report", str(report), "--slo", str(slo), "--users", "2"]) == 0


@pytest.mark.parametrize(
    ("entries", "breaches"),
    [
        ([route("POST /a", {2: 95, 60: 5}), route("invalid: x (400)", {1: 3})], ["POST /a: p95"]),
        ([route("POST /a", {2: 99, 150: 1}), route("invalid: x (400)", {1: 3})], ["POST /a: p99"]),
        ([route("POST /a", {2: 100}, failures=1), route("invalid: x (400)", {1: 3})], ["error rate"]),
        ([route("POST /a", {2: 5}), route("invalid: x (400)", {1: 3})], ["POST /a: requests"]),
        ([route("POST /a", {2: 100}), route("invalid: x (400)", {1: 3}, failures=1)], ["error rate", "wrong status"]),
        ([route("POST /a", {2: 100})], ["invalid requests sent"]),
        (
            [route("POST /a", {2: 100}), route("invalid: x (400)", {1: 3}), route("t", {5: 5}, method="TOKEN")],
            ["token fetches"],
        ),
    ],
)
def test_each_breach_fails_the_check(tmp_path, capsys, entries, breaches):
    report = tmp_path / "run"
    report.with_suffix(".json").write_text(json.dumps(entries))
    slo = tmp_path / "slo.json"
    slo.write_text(json.dumps({"profiles": {"local": SLO}}))
    assert check_slo.main(["--report", str(report), "--slo", str(slo), "--users", "2"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(failed) == len(breaches)
    for line, breach in zip(failed, breaches, strict=True):
        assert breach in line


def test_unreadable_reports_and_profiles_exit_2(tmp_path, capsys):
    slo = tmp_path / "slo.json"
    slo.write_text(json.dumps({"profiles": {"local": SLO}}))
    assert check_slo.main(["--report", str(tmp_path / "missing"), "--slo", str(slo)]) == 2
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    assert check_slo.main(["--report", str(tmp_path / "bad"), "--slo", str(slo)]) == 2
    assert check_slo.main(["--report", str(tmp_path / "bad"), "--slo", str(slo), "--profile", "nope"]) == 2
    assert "no profile 'nope'" in capsys.readouterr().err


def test_the_shipped_slo_file_names_every_route_of_the_mix():
    document = json.loads((LOAD_TESTS / "slo.json").read_text())
    rng = random.Random(1)
    names = {builder(rng).name for builder in scenarios.MIX if builder is not scenarios.invalid}
    for profile in ("local", "deployed"):
        loaded = check_slo.load_profile(LOAD_TESTS / "slo.json", profile)
        assert set(loaded["routes"]) == names, profile
    assert document["profiles"]["local"]["max_error_rate"] == 0.0
