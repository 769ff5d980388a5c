"""Custom result decoders: turn a job's JSON results into your own Python types.

Run it with ``.venv/bin/python examples/custom_decoder.py``. No account and no network are
needed. It shows:

- a ``ResultDecoder`` subclass whose ``decode(raw)`` classmethod builds a dataclass;
- ``result_decoder=(interim, final)``: one decoder for streamed messages, another for
  ``result()``;
- ``job.result(decoder=...)``: a different decoder for one call.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from runtime_job import ResultDecoder, RuntimeService


@dataclass(frozen=True)
class Tick:
    """One interim result of the ``stream`` program."""

    index: int
    width: int


@dataclass(frozen=True)
class Summary:
    """The final result of the ``stream`` program."""

    count: int


class TickDecoder(ResultDecoder):
    """Decodes interim results (one message, or a list of them) into ``Tick``s."""

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        value = super().decode(raw)
        if isinstance(value, list):
            return [Tick(item["index"], len(item["data"])) for item in value]
        return Tick(value["index"], len(value["data"]))


class SummaryDecoder(ResultDecoder):
    """Decodes the final result into a ``Summary``."""

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        return Summary(count=super().decode(raw)["count"])


def show(job_id: str, message: Any) -> None:
    """Print each decoded message as it arrives."""
    print(f"  [{job_id[:8]}] {message!r}")


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as data_dir,
        RuntimeService(channel="local", data_dir=data_dir) as service,
    ):
        job = service.run(
            "stream",
            inputs={"count": 3, "interval": 0.05, "size": 4},
            callback=show,
            result_decoder=(TickDecoder, SummaryDecoder),
        )
        summary = job.result(timeout=60)
        assert isinstance(summary, Summary), summary
        print(f"Decoded final result: {summary!r}")
        print(f"Decoded interim results: {job.interim_results()!r}")
        print(f"The same result, plain: {job.result(decoder=ResultDecoder)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
