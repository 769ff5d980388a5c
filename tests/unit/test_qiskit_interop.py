"""With qiskit installed, qiskit's exception classes catch ours (issue 19 D).

SDKs of the 0.11 era wrote ``except QiskitError`` and
``except qiskit.providers.exceptions.QiskitBackendNotFoundError`` around the reference's
calls, whose errors derive from qiskit's. Ours do too once qiskit is loaded, in whichever
order the user imports the two packages, and without the core ever importing qiskit: the
orders and the absence of qiskit are each checked in a fresh interpreter.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime_job import RuntimeService
from runtime_job.exceptions import (
    IBMInputValueError,
    JobError,
    JobTimeoutError,
    QiskitBackendNotFoundError,
    RequestsApiError,
    RuntimeJobFailureError,
    RuntimeJobTimeoutError,
)

from .fakes import FakeRuntimeClient, params

REPO = Path(__file__).resolve().parents[2]

HIDE_QISKIT = """
import sys
from importlib.machinery import PathFinder

class HideQiskit:
    '''PathFinder, except that qiskit is not there (find_spec says None, import fails).'''

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "qiskit" or name.startswith("qiskit."):
            return None
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()

sys.meta_path[:] = [HideQiskit if f is PathFinder else f for f in sys.meta_path]
"""
"""Makes qiskit absent in a fresh interpreter, as it is when not installed."""

FAILING_CALLS = """
from runtime_job import RuntimeService
from tests.unit.fakes import FakeRuntimeClient, params

client = FakeRuntimeClient(backends=("fake_backend",))
client.add_job("j", statuses=["FAILED"], result="Traceback (most recent call last):\\nboom")
service = RuntimeService._with_client(client, params())

def job_result():
    service.job("j").result()

def backend_nope():
    service.backend("nope")
"""
"""A failed job and an unknown backend, on a scripted client (no server)."""


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def failing_service() -> RuntimeService:
    client = FakeRuntimeClient(backends=("fake_backend",))
    client.add_job("j", statuses=["FAILED"], result="Traceback (most recent call last):\nboom")
    return RuntimeService._with_client(client, params())


# ------------------------------------------------------------------- qiskit installed


class TestWithQiskit:
    """In this process (qiskit is installed in the test environment)."""

    @pytest.fixture(autouse=True)
    def _qiskit(self) -> None:
        pytest.importorskip("qiskit")

    def test_a_failed_result_is_a_qiskit_error(self) -> None:
        from qiskit.exceptions import QiskitError

        service = failing_service()
        try:
            service.job("j").result()
        except QiskitError as err:  # as SDK code of the era wrote it
            assert isinstance(err, RuntimeJobFailureError)
            assert "boom" in str(err) and err.message == str(err)
        else:
            pytest.fail("result() of a failed job did not raise")

    def test_an_unknown_backend_is_qiskits_backend_not_found(self) -> None:
        from qiskit.exceptions import QiskitError
        from qiskit.providers.exceptions import QiskitBackendNotFoundError as QiskitNotFound

        service = failing_service()
        with pytest.raises(QiskitNotFound, match="^No backend matches the criteria.$") as info:
            service.backend("nope")
        assert isinstance(info.value, QiskitBackendNotFoundError)
        with pytest.raises(QiskitError):
            service.backend("nope")

    def test_each_class_has_qiskits_class_of_its_name_as_a_base(self) -> None:
        import qiskit.exceptions as qiskit_errors
        import qiskit.providers.exceptions as provider_errors

        assert issubclass(JobError, provider_errors.JobError)
        assert issubclass(JobTimeoutError, provider_errors.JobTimeoutError)
        assert issubclass(JobTimeoutError, provider_errors.JobError)
        assert issubclass(QiskitBackendNotFoundError, provider_errors.QiskitBackendNotFoundError)
        for cls in (IBMInputValueError, RequestsApiError, RuntimeJobTimeoutError, JobError):
            assert issubclass(cls, qiskit_errors.QiskitError), cls
        # Only the classes of the same name: a job failure is not qiskit's JobError, as in
        # the reference.
        assert not issubclass(RuntimeJobFailureError, provider_errors.JobError)

    def test_our_errors_keep_their_own_behaviour(self) -> None:
        timeout = RuntimeJobTimeoutError("Timed out waiting for job", "j")
        assert isinstance(timeout, TimeoutError)
        assert str(timeout) == timeout.message == "Timed out waiting for job j"  # not a repr
        http = RequestsApiError("404 Not Found", 404, url="http://h/jobs/x")
        assert (str(http), http.status_code, http.url) == ("404 Not Found", 404, "http://h/jobs/x")
        copy = pickle.loads(pickle.dumps(QiskitBackendNotFoundError("gone")))
        assert type(copy) is QiskitBackendNotFoundError and copy.message == "gone"


@pytest.mark.parametrize(
    "imports",
    [
        pytest.param("import runtime_job\nimport qiskit", id="runtime_job-then-qiskit"),
        pytest.param("import qiskit\nimport runtime_job", id="qiskit-then-runtime_job"),
        pytest.param(
            "import runtime_job\nfrom qiskit.providers.exceptions import JobError",
            id="runtime_job-then-qiskit-providers",
        ),
        pytest.param(
            "import runtime_job\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'Qiskit' not in type(f).__name__]\n"
            "import qiskit",
            id="qiskit-loaded-past-the-hook",  # then the first error created adopts the bases
        ),
    ],
)
def test_either_import_order_interoperates(imports: str) -> None:
    pytest.importorskip("qiskit")
    checks = """
        import runtime_job.exceptions as ours
        from qiskit.exceptions import QiskitError
        from qiskit.providers.exceptions import (
            JobError, JobTimeoutError, QiskitBackendNotFoundError)
        import qiskit.exceptions, qiskit.providers.exceptions

        caught = []
        for call, catch in ((job_result, QiskitError), (backend_nope, QiskitBackendNotFoundError)):
            try:
                call()
            except catch:
                caught.append(call.__name__)
        pairs = ((ours.JobError, JobError), (ours.JobTimeoutError, JobTimeoutError))
        for ours_cls, theirs in pairs:
            try:
                raise ours_cls("x")
            except theirs:
                caught.append(ours_cls.__name__)
        print(caught)
        # The hook is gone, and qiskit's modules keep their own loaders.
        print([type(f).__name__ for f in sys.meta_path if "Qiskit" in type(f).__name__])
        print(type(qiskit.exceptions.__loader__).__name__,
              type(qiskit.providers.exceptions.__spec__.loader).__name__)
    """
    if imports.startswith("import runtime_job"):
        # The service exists, and qiskit is not loaded, before the user imports qiskit.
        code = FAILING_CALLS + "\nassert 'qiskit' not in sys.modules\n" + imports + "\n"
    else:
        code = imports + "\n" + FAILING_CALLS
    out = run_python("import sys\n" + code + textwrap.dedent(checks)).splitlines()
    assert out[0] == "['job_result', 'backend_nope', 'JobError', 'JobTimeoutError']"
    assert out[1] == "[]"
    assert out[2] == "SourceFileLoader SourceFileLoader"


# -------------------------------------------------------------------- qiskit absent


def test_without_qiskit_the_errors_work_and_nothing_imports_qiskit() -> None:
    checks = """
        import pickle
        import runtime_job
        from runtime_job.exceptions import (
            IBMError, QiskitBackendNotFoundError, QiskitError, RuntimeJobFailureError,
            RuntimeJobLibraryError, RuntimeJobTimeoutError)

        assert QiskitError is RuntimeJobLibraryError
        caught = []
        for call, catch in ((job_result, QiskitError), (job_result, RuntimeJobFailureError),
                            (job_result, IBMError), (backend_nope, QiskitBackendNotFoundError),
                            (backend_nope, QiskitError)):
            try:
                call()
            except catch as err:
                assert str(err) == err.message
                caught.append(type(err).__name__)
        print(caught)
        try:
            import qiskit
        except ModuleNotFoundError:
            print("no qiskit")
        timeout = RuntimeJobTimeoutError("late")
        assert isinstance(timeout, TimeoutError) and str(timeout) == "late"
        assert pickle.loads(pickle.dumps(QiskitBackendNotFoundError("x"))).message == "x"
        print(sorted(m for m in sys.modules if m == "qiskit" or m.startswith("qiskit.")))
    """
    out = run_python(HIDE_QISKIT + FAILING_CALLS + textwrap.dedent(checks)).splitlines()
    assert out == [
        "['RuntimeJobFailureError', 'RuntimeJobFailureError', 'RuntimeJobFailureError', "
        "'QiskitBackendNotFoundError', 'QiskitBackendNotFoundError']",
        "no qiskit",
        "[]",
    ]
