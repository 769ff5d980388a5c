"""Fixed facts of a local server: limits, the instance, and the one backend it offers."""

from __future__ import annotations

import re
from typing import Any

from .programs import BACKEND_NAME

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body accepted (413 above)."""
MAX_LIST_LIMIT = 1000
"""Largest page of ``GET /jobs`` (larger limits are capped, not refused)."""
DEFAULT_LIST_LIMIT = 200
"""Page size of ``GET /jobs`` when no ``limit`` is given."""
LIST_PARAMS_BUDGET = 16 * 1024 * 1024
"""Most characters of params on one page of ``GET /jobs`` (the first job always fits): a
page ends early rather than grow past it; ``count`` and the cursor let clients go on."""
STREAM_BATCH_ROWS = 64
"""Most interim results a stream reads from storage at a time."""
STREAM_BATCH_BYTES = 1024 * 1024
"""Most characters of interim results a stream reads at a time (beyond its first one).
A stream holds at most one batch, plus the one message it is sending: the server's memory
per stream does not grow with the job's output."""
MAX_CONNECTIONS = 512
"""Most connections (HTTP and websocket) one server serves at once; beyond it, a new
connection closes the oldest one still waiting for a request head, or, when every
connection is busy, is itself closed at once."""
REQUEST_HEAD_TIMEOUT = 10.0
"""Seconds a connection may take to send a complete request head (and a kept-alive one may
stay idle) before it is closed: connections that never finish a request cannot pile up."""
MAX_REQUEST_HEAD_BYTES = 64 * 1024
"""Largest request head (request line and headers) accepted."""
MAX_COST = 10 * 365 * 24 * 3600
"""Largest ``cost`` (maximum execution time, seconds) a job may ask for."""
MAX_TAGS = 64
"""Most tags on one job."""
MAX_TAG_LENGTH = 256
"""Longest tag."""

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What job, session and program ids look like; anything else is refused (422)."""
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
"""What an ``Idempotency-Key`` header may hold (visible ASCII)."""

HUB = "local"
GROUP = "default"
PROJECT = "main"
INSTANCE = f"{HUB}/{GROUP}/{PROJECT}"
"""The one hub/group/project of every user."""

BACKEND_VERSION = "1.0.0"
N_QUBITS = 8
_BASIS_GATES = ["id", "rz", "sx", "x", "cx"]
_QASM_DEFS = {
    "id": "gate id q { U(0, 0, 0) q; }",
    "rz": "gate rz(theta) q { U(0, 0, theta) q; }",
    "sx": "gate sx q { U(pi/2, 3*pi/2, pi/2) q; }",
    "x": "gate x q { U(pi, 0, pi) q; }",
    "cx": "gate cx c, t { CX c, t; }",
}
_PARAMS = {"rz": ["theta"]}


def _coupling_map() -> list[list[int]]:
    return [[a, b] for a in range(N_QUBITS) for b in range(N_QUBITS) if a != b]


def backend_configuration() -> dict[str, Any]:
    """The configuration of ``local_simulator``, complete enough for qiskit's backend classes."""
    coupling = _coupling_map()
    gates = []
    for name in _BASIS_GATES:
        gate: dict[str, Any] = {
            "name": name,
            "parameters": _PARAMS.get(name, []),
            "qasm_def": _QASM_DEFS[name],
        }
        if name == "cx":
            gate["coupling_map"] = coupling
        else:
            gate["coupling_map"] = [[q] for q in range(N_QUBITS)]
        gates.append(gate)
    return {
        "backend_name": BACKEND_NAME,
        "backend_version": BACKEND_VERSION,
        "n_qubits": N_QUBITS,
        "basis_gates": list(_BASIS_GATES),
        "gates": gates,
        "local": False,
        "simulator": True,
        "conditional": True,
        "conditional_latency": [],
        "open_pulse": False,
        "memory": True,
        "max_shots": 100000,
        "max_experiments": 300,
        "coupling_map": coupling,
        "supported_instructions": [*_BASIS_GATES, "measure", "reset", "delay", "barrier"],
        "dynamic_reprate_enabled": False,
        "online_date": "2024-01-01T00:00:00Z",
        "description": "Statevector simulator of a runtime-job local server",
        "sample_name": "local",
        "credits_required": False,
        "input_allowed": ["job", "runtime"],
        "n_registers": 1,
        "allow_q_object": True,
        "multi_meas_enabled": True,
    }


def backend_status(queue_length: int) -> dict[str, Any]:
    """``GET /backends/local_simulator/status``."""
    return {
        "state": True,
        "status": "active",
        "message": "",
        "length_queue": queue_length,
        "backend_version": BACKEND_VERSION,
        "backend_name": BACKEND_NAME,
    }


def network() -> list[dict[str, Any]]:
    """``GET /api/Network``: the one hub, group and project, keyed by name."""
    project = {"name": PROJECT, "title": PROJECT, "isDefault": True, "priority": 1}
    group = {"name": GROUP, "title": GROUP, "isDefault": True, "projects": {PROJECT: project}}
    return [{"name": HUB, "title": HUB, "isDefault": True, "groups": {GROUP: group}}]


__all__ = [
    "BACKEND_NAME",
    "BACKEND_VERSION",
    "DEFAULT_LIST_LIMIT",
    "GROUP",
    "HUB",
    "IDEMPOTENCY_KEY_RE",
    "ID_RE",
    "INSTANCE",
    "LIST_PARAMS_BUDGET",
    "MAX_BODY_BYTES",
    "MAX_CONNECTIONS",
    "MAX_COST",
    "MAX_LIST_LIMIT",
    "MAX_REQUEST_HEAD_BYTES",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "N_QUBITS",
    "PROJECT",
    "REQUEST_HEAD_TIMEOUT",
    "STREAM_BATCH_BYTES",
    "STREAM_BATCH_ROWS",
    "backend_configuration",
    "backend_status",
    "network",
]
