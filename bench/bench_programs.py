"""Programs the benchmark server runs in addition to the built-in ones.

``bench/run.py`` starts ``runtime-job serve`` with ``bench/`` on ``PYTHONPATH`` and registers:

- ``bench-stream`` (:func:`stamped_stream`): interim results that carry the instant they were
  published, so a client can measure each message's delivery delay (``start_at`` makes
  many jobs start publishing at one common instant);
- ``bench-arrays`` (:func:`arrays`): a result made of random float64 arrays of a given size.

Both run in the server's worker processes, on the same machine and clock as the clients.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

MIB = 1024 * 1024


def stamped_stream(
    backend: Any,
    user_messenger: Any,
    count: int = 10,
    interval: float = 0.01,
    start_at: float = 0.0,
    delay: float = 0.0,
) -> dict[str, Any]:
    """Publish ``{"index": i, "t": time.time()}`` for ``i`` in ``0..count-1``.

    Messages are ``interval`` seconds apart (on a fixed schedule, so a slow publish does not
    push the later ones back). With ``start_at`` (a ``time.time()`` instant), the first
    message waits for that instant and the schedule counts from it, so that jobs given the
    same ``start_at`` publish together (a job that starts after it catches up at once).
    With ``delay`` (seconds), the schedule starts that long after the job starts running: a
    program that takes a moment before its first interim result.

    Returns:
        ``{"count": count, "t": <the instant of return>}``.
    """
    count = int(count)
    start = time.monotonic() + float(delay)
    if start_at:
        # The wall-clock instant on this process's monotonic clock, which the sleeps use.
        start += float(start_at) - time.time()
    for i in range(count):
        delay = start + i * float(interval) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        user_messenger.publish({"index": i, "t": time.time()})
    return {"count": count, "t": time.time()}


def arrays(backend: Any, user_messenger: Any, mib: int = 20, parts: int = 8) -> dict[str, Any]:
    """``parts`` random float64 arrays of ``mib`` MiB in all, and their checksum.

    Returns:
        ``{"array_0": ndarray, ..., "checksum": float, "nbytes": int}``.
    """
    rng = np.random.default_rng(int(mib))
    per_array = int(mib) * MIB // int(parts) // 8
    rows = max(per_array // 1000, 1)
    result: dict[str, Any] = {
        f"array_{i}": rng.random((rows, per_array // rows)) for i in range(int(parts))
    }
    result["checksum"] = float(sum(float(a.sum()) for a in result.values()))
    result["nbytes"] = int(sum(a.nbytes for k, a in result.items() if k.startswith("array_")))
    return result


PROGRAMS = {
    "bench-stream": f"{__name__}:stamped_stream",
    "bench-arrays": f"{__name__}:arrays",
}
"""Program id -> import path, as given to ``runtime-job serve --program``."""
