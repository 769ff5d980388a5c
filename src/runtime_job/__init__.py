"""runtime-job: the Qiskit Runtime job client, rebuilt, with a local runtime server."""

__version__ = "0.1.0"
