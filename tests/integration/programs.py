"""Programs the integration tests register on their server (importable by the workers)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def printer(backend: Any, user_messenger: Any, lines: int = 2) -> str:
    """Print to stdout and stderr, then return ``"printed"``."""
    for i in range(lines):
        print(f"stdout line {i}")
    print("to stderr", file=sys.stderr)
    return "printed"


def final_publisher(backend: Any, user_messenger: Any, value: Any = 42) -> None:
    """Set the final result with ``publish(final=True)`` and return ``None``."""
    user_messenger.publish({"interim": True})
    user_messenger.publish({"final": value}, final=True)


def crasher(backend: Any, user_messenger: Any, code: int = 7) -> None:
    """Publish once, then kill the worker process abruptly."""
    user_messenger.publish({"before": "crash"})
    time.sleep(0.05)
    os._exit(code)


def backend_name(backend: Any, user_messenger: Any) -> str:
    """Return the name of the backend the program was given."""
    return str(backend.name)


def slow_stream(backend: Any, user_messenger: Any, count: int = 3, interval: float = 0.2) -> int:
    """Publish ``{"n": i}`` ``count`` times, ``interval`` seconds apart."""
    for i in range(count):
        user_messenger.publish({"n": i})
        time.sleep(interval)
    return count
