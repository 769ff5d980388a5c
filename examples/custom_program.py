"""Writing your own runtime program and running it on an embedded local server.

Run it with ``.venv/bin/python examples/custom_program.py``. No account and no network are
needed. It shows:

- a program is a module-level function ``main(backend, user_messenger, **inputs)``
  (here ``my_programs.countdown``) that publishes interim results and returns the final one;
- registering it with ``LocalRuntimeServer(programs={"countdown": "my_programs:countdown"})``;
- connecting a ``RuntimeService`` to that server by URL and token, then reading the job's
  result, interim results and logs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from runtime_job import RuntimeService
from runtime_job.server import LocalRuntimeServer

# Workers import programs by path with the server's sys.path: make this directory importable.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def show(job_id: str, result: Any) -> None:
    """Print each interim result (and the final result) as it arrives."""
    print(f"  [{job_id[:8]}] {result}")


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as data_dir,
        LocalRuntimeServer(
            data_dir=data_dir, workers=1, programs={"countdown": "my_programs:countdown"}
        ) as server,
        RuntimeService(channel="local", url=server.url, token=server.token) as service,
    ):
        print(f"Local server at {server.url} with program 'countdown'")
        job = service.run("countdown", inputs={"start": 3}, callback=show)
        result = job.result(timeout=60)
        print(f"Final result: {result!r}")
        print(f"Interim results: {job.interim_results()!r}")
        print("Logs:")
        print("  " + "\n  ".join(job.logs().splitlines() or ["(none)"]))
        assert result["launched"] is True, result
    return 0


if __name__ == "__main__":
    sys.exit(main())
