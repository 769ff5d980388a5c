"""Programs of the runner and storage tests (importable by the server's workers).

- ``ok``: returns ``{"ok": True}`` (the job of "another user" that must still complete);
- ``prints-surrogate`` / ``raises-surrogate``: output or an exception message holding a lone
  surrogate, which SQLite cannot store as it is;
- ``publishes``: ``n`` interim results and a log line each;
- ``waits-then-talks``: blocks until the test writes a line to a FIFO, then prints and
  publishes ``kib`` KiB (a job that is running when the disk fills);
- ``logs-levels``: one record per level on a module logger, and one on qiskit's logger.
"""

from __future__ import annotations

import logging
from typing import Any

SURROGATE = "\ud800"
"""A lone surrogate: valid in a Python string, not encodable as UTF-8."""


def ok(backend: Any, user_messenger: Any) -> dict[str, bool]:
    """Return ``{"ok": True}``."""
    return {"ok": True}


def prints_surrogate(backend: Any, user_messenger: Any) -> str:
    """Print a line holding a lone surrogate, then return normally."""
    print(f"before {SURROGATE} after", flush=True)
    return "printed"


def raises_surrogate(backend: Any, user_messenger: Any) -> None:
    """Raise with a lone surrogate in the message (the traceback holds it)."""
    raise ValueError(f"bad key {SURROGATE!s}")


def publishes(backend: Any, user_messenger: Any, n: int = 3) -> dict[str, int]:
    """Publish ``{"i": i}`` and print a line, ``n`` times."""
    for i in range(int(n)):
        print(f"line {i}", flush=True)
        user_messenger.publish({"i": i})
    return {"n": int(n)}


def waits_then_talks(backend: Any, user_messenger: Any, fifo: str, kib: int = 64) -> dict[str, int]:
    """Wait for one line on the FIFO ``fifo``, then print and publish ``kib`` KiB each."""
    with open(fifo, encoding="utf-8") as pipe:
        pipe.readline()
    chunk = "y" * 1023
    for _ in range(int(kib)):
        print(chunk, flush=True)
    user_messenger.publish({"blob": "z" * (int(kib) * 1024)})
    return {"kib": int(kib)}


def logs_levels(backend: Any, user_messenger: Any) -> str:
    """Log one record per level (module logger), and an INFO record on ``qiskit``'s logger."""
    log = logging.getLogger("tests.reliability.runner_programs")
    log.debug("debug record")
    log.info("info record")
    log.warning("warning record")
    log.error("error record")
    logging.getLogger("qiskit.transpiler").info("qiskit info record")
    return "logged"


PROGRAMS = {
    "ok": "tests.reliability.runner_programs:ok",
    "prints-surrogate": "tests.reliability.runner_programs:prints_surrogate",
    "raises-surrogate": "tests.reliability.runner_programs:raises_surrogate",
    "publishes": "tests.reliability.runner_programs:publishes",
    "waits-then-talks": "tests.reliability.runner_programs:waits_then_talks",
    "logs-levels": "tests.reliability.runner_programs:logs_levels",
}
"""Program ids and import paths, for ``LocalRuntimeServer(programs=...)``."""
