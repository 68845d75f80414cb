"""The emulator's fault switch: a real function error on demand, for demos and for testing the alarms.

Arming it (``POST /faults/function-error`` on the local monitoring port, never on the API) makes the next
invocations receive :data:`INJECTED_FAULT_EVENT` in place of their API Gateway event. No API Gateway sends
such an event, and the function can't handle it: its handler raises an unhandled exception under the real
runtime (Mangum finds no adapter for it). So the error is the function's own, and everything downstream is
real: the runtime's error response, Lambda's ``Errors`` metric, the ``Status: error`` REPORT line, and API
Gateway's 500 and ``5xx`` metric. The function's code is unchanged; only the event is.
"""

from __future__ import annotations

import json
import threading
from typing import Final

#: An event that is no API Gateway event (no ``version``, no ``requestContext``).
INJECTED_FAULT_EVENT: Final = json.dumps(
    {"emulatorFault": "an injected function error: this is not an API Gateway event"}, separators=(",", ":")
).encode()
#: The most errors one request may arm.
MAX_ARMED: Final = 1000


class FaultSwitch:
    """How many of the next invocations get the fault event."""

    def __init__(self) -> None:
        self._pending = 0
        self._injected = 0
        self._lock = threading.Lock()

    def arm_function_errors(self, count: int = 1) -> int:
        """Make the next ``count`` invocations fail; how many are now pending."""
        if not 1 <= count <= MAX_ARMED:
            raise ValueError(f"count must be between 1 and {MAX_ARMED}, got {count}")
        with self._lock:
            self._pending += count
            return self._pending

    def take_function_error(self) -> bool:
        """Whether this invocation is to fail (and if so, one fewer is pending)."""
        with self._lock:
            if self._pending == 0:
                return False
            self._pending -= 1
            self._injected += 1
            return True

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def injected(self) -> int:
        return self._injected
