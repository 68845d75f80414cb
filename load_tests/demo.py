"""``make demo``'s load: the usual users throughout, and a burst of bad requests in the middle.

The timeline is in CloudWatch minutes of the demo's stack (``DEMO_MINUTE`` seconds each, so the dashboard's
one-minute periods pass in seconds): ``DEMO_USERS`` users of the request mix (:class:`locustfile.ServiceUser`)
for ``DEMO_MINUTES`` minutes, and as many :class:`BadRequestUser`, which send the mix's invalid requests
from minute :data:`BURST_FROM` to :data:`BURST_TO` and wait otherwise (every invalid request must get
exactly its 4xx, so they count as successes: it is the API's 4xx line that moves). The demo's driver
(``onnx_lambda_tools.demo``) injects the one function error through the emulator's fault switch.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

from locust import LoadTestShape, constant, events
from locustfile import ServiceUser
from scenarios import INVALID_CASES

MINUTE: Final = float(os.environ.get("DEMO_MINUTE", "10"))
USERS: Final = int(os.environ.get("DEMO_USERS", "2"))
MINUTES: Final = float(os.environ.get("DEMO_MINUTES", "7"))
#: The burst of bad requests, in minutes from the start.
BURST_FROM: Final = 2.0
BURST_TO: Final = 3.0
_started = time.monotonic()


def _mark_start(**_: Any) -> None:
    global _started
    _started = time.monotonic()


events.test_start.add_listener(_mark_start)  # type: ignore[no-untyped-call]


def _bad_request(user: ServiceUser) -> None:
    if BURST_FROM <= (time.monotonic() - _started) / MINUTE < BURST_TO:
        user.send(user.rng.choice(INVALID_CASES))


class BadRequestUser(ServiceUser):
    """A careless client: only the mistakes of :data:`scenarios.INVALID_CASES`, back to back, in the burst."""

    wait_time = constant(0.1)
    fixed_count = USERS


# Set after the class is made: locust's metaclass adds the base class's tasks to any declared in the body.
BadRequestUser.tasks = [_bad_request]  # type: ignore[assignment]  # a list, as the metaclass leaves it


class DemoShape(LoadTestShape):
    """The steady and the bad users from the start; stops after :data:`MINUTES`."""

    def tick(self) -> tuple[int, float] | None:
        if self.get_run_time() / MINUTE >= MINUTES:  # type: ignore[no-untyped-call]  # locust leaves it unannotated
            return None
        return (2 * USERS, 2 * USERS)
