"""Load test for onnx-lambda: token-authenticated users sending a realistic mix of requests.

Run it headless against the local stack with ``make load``, or against any deployment::

    locust -f load_tests/locustfile.py --host https://<api-id>.execute-api.<region>.amazonaws.com

Each user fetches one token when it starts and refreshes it only near expiry (``bearer.py``); the
fetches appear in the statistics as ``TOKEN`` rows, so a run shows how many it made (at most one per
user and hour; the ``tokens`` module's file cache can serve several users from one Cognito response). The request mix
and the check on every response are in ``scenarios.py``: invalid requests count as successes only
when they get exactly their expected 4xx. Wait times between a user's requests are
``LOAD_WAIT_MIN``..``LOAD_WAIT_MAX`` seconds (default 0.2..1.0).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from bearer import BearerToken, TokenSource, TokenUnavailable, token_source_from_environment
from locust import FastHttpUser, between, events
from locust.env import Environment
from scenarios import MIX, Builder, PlannedRequest

_TOKEN_SOURCE: TokenSource | None = None


def _choose_token_source(environment: Environment, **_: object) -> None:
    """Pick the token source once per process, so a misconfiguration stops the run before it starts."""
    global _TOKEN_SOURCE
    try:
        _TOKEN_SOURCE = token_source_from_environment()
    except TokenUnavailable as error:
        environment.process_exit_code = 2
        raise SystemExit(f"load test: {error}") from None


events.init.add_listener(_choose_token_source)  # type: ignore[no-untyped-call]


def _task(builder: Builder) -> Callable[[ServiceUser], None]:
    def task(user: ServiceUser) -> None:
        user.send(builder(user.rng))

    task.__name__ = builder.__name__
    return task


class ServiceUser(FastHttpUser):
    """A client of the service: one bearer token, requests drawn from :data:`scenarios.MIX`."""

    wait_time = between(float(os.environ.get("LOAD_WAIT_MIN", "0.2")), float(os.environ.get("LOAD_WAIT_MAX", "1.0")))
    # locust takes {task: weight} as well as a list; its annotation only names the list.
    tasks = {_task(builder): weight for builder, weight in MIX.items()}  # type: ignore[assignment]  # noqa: RUF012

    def on_start(self) -> None:
        self.rng = random.Random()  # noqa: S311 - traffic shapes, not secrets
        if _TOKEN_SOURCE is None:
            raise TokenUnavailable("the token source was not chosen")
        self.bearer = BearerToken(_TOKEN_SOURCE, on_fetch=self._record_token_fetch)
        self.bearer.current()  # the token comes before the first request, not during it

    def _record_token_fetch(self, milliseconds: float, error: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type="TOKEN",
            name="token fetch",
            response_time=milliseconds,
            response_length=0,
            exception=error,
            context={},
        )

    def send(self, planned: PlannedRequest) -> None:
        headers = dict(planned.headers)
        if planned.authenticated:
            headers["authorization"] = f"Bearer {self.bearer.current()}"
        with self.client.request(
            planned.method,
            planned.path,
            data=planned.body,  # type: ignore[arg-type]  # locust documents bytes; its annotation says str
            headers=headers,
            name=planned.name,
            catch_response=True,
        ) as response:
            problem = planned.problem(response.status_code, response.content or b"")
            if problem is None:
                response.success()
            else:
                response.failure(problem)
