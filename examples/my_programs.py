"""A runtime program, used by ``custom_program.py``, and how to try it without a server.

``custom_program.py`` registers ``countdown`` with a local server as
``"my_programs:countdown"``. Run this file directly
(``.venv/bin/python examples/my_programs.py``) to call the program in-process with a stand-in
messenger: a quick way to test a program before serving it.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any


def countdown(backend: Any, user_messenger: Any, start: int = 3) -> dict[str, Any]:
    """Publish ``{"remaining": n}`` from ``start`` down to 1; return a summary.

    Args:
        backend: The local backend the job runs on.
        user_messenger: Publishes interim results.
        start: Where to count down from.

    Returns:
        ``{"launched": True, "backend": <backend name>, "steps": start}``.
    """
    for remaining in range(int(start), 0, -1):
        print(f"{remaining}...", flush=True)  # goes to the job's logs
        user_messenger.publish({"remaining": remaining})
    return {"launched": True, "backend": backend.name, "steps": int(start)}


class PrintingMessenger:
    """Stands in for the server's messenger: prints what the program publishes."""

    def publish(self, message: Any, final: bool = False) -> None:
        print(f"  published{' (final)' if final else ''}: {message}")


def main() -> int:
    backend = SimpleNamespace(name="in-process")
    result = countdown(backend, PrintingMessenger(), start=2)
    print(f"Returned: {result!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
