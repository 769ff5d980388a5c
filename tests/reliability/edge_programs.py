"""Programs of the server-edge tests (imported by the server's workers by path)."""

from __future__ import annotations

from typing import Any


def blob_stream(backend: Any, user_messenger: Any, count: int = 300, kib: int = 100) -> int:
    """Publish ``{"index": i, "blob": "x" * kib KiB}`` ``count`` times; return ``count``."""
    blob = "x" * (int(kib) * 1024)
    for index in range(int(count)):
        user_messenger.publish({"index": index, "blob": blob})
    return int(count)


PROGRAMS = {"blob-stream": "tests.reliability.edge_programs:blob_stream"}
"""Program ids of this module, for ``LocalRuntimeServer(programs=...)``."""
