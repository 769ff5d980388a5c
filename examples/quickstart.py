"""Quick start: run a job on the embedded local runtime server, streaming its interim results.

Run it with ``make demo``. No account and no network are needed: with no account
configured, ``RuntimeService()`` starts a local runtime server for this process.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from runtime_job import RuntimeService


def show(job_id: str, result: Any) -> None:
    """Print each interim result (and the final result) as it arrives."""
    print(f"  [{job_id[:8]}] received: {result}")


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as data_dir,
        RuntimeService(channel="local", data_dir=data_dir) as service,
    ):
        print("Submitting 'hello-world' to the local runtime server...")
        job = service.run("hello-world", inputs={"iterations": 3}, callback=show)
        print(f"Job {job.job_id()} submitted.")
        result = job.result(timeout=60)
        print(f"Final result: {result!r}")
        print(f"Status: {job.status().name}")
        print("Logs:")
        print("  " + "\n  ".join(job.logs().splitlines() or ["(none)"]))
        metrics = job.metrics()
        print(f"Metrics: {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
