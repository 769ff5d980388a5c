"""The reliability tests' fault proxy: now :mod:`tests.support.faultproxy` (re-exported)."""

from __future__ import annotations

from tests.support.faultproxy import (
    Action,
    CutHead,
    Delay,
    Drop,
    FaultProxy,
    Lose,
    Respond,
    Rewrite,
    Rule,
    Seen,
    Stall,
    TcpProxy,
    Throttle,
    Truncate,
    ws_count,
)

__all__ = [
    "Action",
    "CutHead",
    "Delay",
    "Drop",
    "FaultProxy",
    "Lose",
    "Respond",
    "Rewrite",
    "Rule",
    "Seen",
    "Stall",
    "TcpProxy",
    "Throttle",
    "Truncate",
    "ws_count",
]
