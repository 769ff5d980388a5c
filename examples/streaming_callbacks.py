"""Streaming interim results to callbacks, on the embedded local runtime server.

Run it with ``.venv/bin/python examples/streaming_callbacks.py``. No account and no network
are needed. It shows:

- ``service.run(..., callback=...)``: every interim result (and then the final result)
  reaches the callback exactly once and in order;
- ``job.stream_results(callback)``: attaching a callback to a job already submitted;
- ``job.interim_results()``: everything published, read back once the job is done.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from typing import Any

from runtime_job import RuntimeService

COUNT = 5


class Collector:
    """A callback that records what it receives (callbacks run on a stream hub thread)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.received: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, job_id: str, result: Any) -> None:
        with self._lock:
            self.received.append(result)
        print(f"  [{self.label} {job_id[:8]}] {result}")


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as data_dir,
        RuntimeService(channel="local", data_dir=data_dir) as service,
    ):
        print(f"A callback given to run(), streaming {COUNT} interim results...")
        first = Collector("run")
        job = service.run(
            "stream", inputs={"count": COUNT, "interval": 0.05, "size": 2}, callback=first
        )
        result = job.result(timeout=60)
        print(f"Final result: {result!r}")

        print("A callback attached after submission with stream_results()...")
        second = Collector("late")
        later = service.run("stream", inputs={"count": 3, "interval": 0.2})
        later.stream_results(second)
        print(f"Final result: {later.result(timeout=60)!r}")

        indices = [m["index"] for m in job.interim_results()]
        print(f"interim_results() after the fact: indices {indices}")
        streamed = [m["index"] for m in first.received if isinstance(m, dict) and "index" in m]
        assert streamed == list(range(COUNT)), streamed
        print(f"Streamed {len(streamed)} interim results in order, each exactly once.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
