"""A script as a qiskit-ibm-runtime 0.11 user writes it, with one line changed: the import.

``tests/examples/test_migration.py`` runs it against a local runtime server whose login URL
and token it reads from RUNTIME_JOB_TEST_URL and RUNTIME_JOB_TEST_TOKEN.
"""

import os

from runtime_job import QiskitRuntimeService  # was: from qiskit_ibm_runtime import ...

service = QiskitRuntimeService(
    channel="ibm_quantum",
    url=os.environ["RUNTIME_JOB_TEST_URL"],
    token=os.environ["RUNTIME_JOB_TEST_TOKEN"],
)

received = []


def result_callback(job_id, result):
    received.append(result)


options = {"backend": "local_simulator"}
job = service.run(
    program_id="echo",
    options=options,
    inputs={"greeting": "hello", "numbers": [1, 2, 3]},
    callback=result_callback,
)
print(f"Job ID: {job.job_id()}")

result = job.result()
print(f"Result: {result}")
print(f"Status: {job.status()}")

recent = [j.job_id() for j in service.jobs(limit=5)]
print(f"Listed: {job.job_id() in recent}")

logs = job.logs()
print(f"Logs: {type(logs).__name__}")
