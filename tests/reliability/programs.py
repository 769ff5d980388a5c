"""Programs the reliability tests register on their servers (importable by the workers)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np


def chatty(backend: Any, user_messenger: Any, n: int = 3, pause: float = 0.0) -> dict[str, int]:
    """Print a log line and publish ``{"i": i}`` ``n`` times; return ``{"n": n}``."""
    for i in range(int(n)):
        print(f"chatty line {i}", flush=True)
        user_messenger.publish({"i": i})
        if pause:
            time.sleep(float(pause))
    return {"n": int(n)}


def quiet_then(
    backend: Any, user_messenger: Any, silence: float = 1.0, count: int = 2
) -> dict[str, int]:
    """Publish once, stay silent ``silence`` seconds, publish the rest; return the count."""
    user_messenger.publish({"k": 0})
    time.sleep(float(silence))
    for k in range(1, int(count)):
        user_messenger.publish({"k": k})
    return {"count": int(count)}


def big_array(backend: Any, user_messenger: Any, mib: int = 100) -> Any:
    """Return random float64 values whose encoded result is about ``mib`` MiB of text.

    Random bits do not compress, so the payload is base64 of the ``.npy`` bytes: 4/3 of the
    array's size.
    """
    count = int(mib) * 1024 * 1024 * 3 // 4 // 8
    return np.random.default_rng(1).random(count)


def big_text(backend: Any, user_messenger: Any, mib: int = 100) -> str:
    """Return a string of ``mib`` MiB."""
    return "x" * (int(mib) * 1024 * 1024)


def raw_final(backend: Any, user_messenger: Any, document: str = "{}", interim: str = "") -> None:
    """Publish ``interim`` (if any) and set the final result to ``document``, both verbatim.

    ``document`` is JSON text: it is parsed and re-encoded with the plain JSON encoder, so
    whatever it holds (type tags included) reaches the client as written.
    """
    if interim:
        user_messenger.publish(json.loads(interim), encoder=json.JSONEncoder)
    user_messenger.publish(json.loads(document), encoder=json.JSONEncoder, final=True)


PROGRAMS = {
    "chatty": "tests.reliability.programs:chatty",
    "quiet-then": "tests.reliability.programs:quiet_then",
    "big-array": "tests.reliability.programs:big_array",
    "big-text": "tests.reliability.programs:big_text",
    "raw-final": "tests.reliability.programs:raw_final",
}
"""Program ids and import paths, for ``LocalRuntimeServer(programs=...)`` or ``--program``."""
