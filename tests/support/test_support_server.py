"""The server factory's package-end cleanup asks each server only about its own users."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import server as server_mod


def test_leftovers_are_cancelled_only_on_servers_that_know_the_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another package's server (still running, session scope) knows other users: asking it
    # about these would be answered 401.
    default = SimpleNamespace(tokens=[server_mod.ALICE, server_mod.BOB, server_mod.E2E])
    other = SimpleNamespace(tokens=["reliability-alice", "reliability-bob"])
    asked: list[tuple[Any, list[str]]] = []

    def record(server: Any, tokens: Sequence[str]) -> list[str]:
        asked.append((server, list(tokens)))
        return []

    monkeypatch.setattr(server_mod, "_STARTED", [other, default])
    monkeypatch.setattr(server_mod, "cancel_pending", record)
    server_mod.cancel_leftovers([server_mod.ALICE, server_mod.BOB, server_mod.CAROL])
    assert asked == [(default, [server_mod.ALICE, server_mod.BOB])]
