"""Today's primitives' inputs (V2 pubs) and results (``PrimitiveResult``), on any channel.

Run it with ``.venv/bin/python examples/v2_primitives.py`` (needs qiskit). It runs on the
embedded local runtime server; to run it on IBM Quantum Platform, change only the channel
(``channel="ibm_quantum_platform"``, with ``QISKIT_IBM_TOKEN`` holding your API key and,
optionally, ``QISKIT_IBM_INSTANCE`` your instance CRN). See ``docs/platform.md``.
"""

from __future__ import annotations

import sys
import tempfile

from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from runtime_job import RuntimeService


def main() -> int:
    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    measured = bell.copy()
    measured.measure_all()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        RuntimeService(channel="local", data_dir=data_dir) as service,
    ):
        sampler = service.run(
            "sampler",
            inputs={"pubs": [(measured, None, 1000)], "version": 2, "support_qiskit": True},
            options={"backend": "local_simulator"},
        )
        counts = sampler.result(timeout=120)[0].data.meas.get_counts()
        print(f"Sampler counts: {dict(sorted(counts.items()))}")
        estimator = service.run(
            "estimator",
            inputs={"pubs": [(bell, [SparsePauliOp(p) for p in ("ZZ", "XX", "ZI")])], "version": 2},
            options={"backend": "local_simulator"},
        )
        evs = estimator.result(timeout=120)[0].data.evs
        print(f"Estimator <ZZ>, <XX>, <ZI>: {[round(float(v), 3) for v in evs]}")
        assert set(counts) <= {"00", "11"}, counts
    print("Bell state: only 00 and 11, <ZZ> = <XX> = 1.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
