"""The package exports what it promises, documented, and imports without qiskit."""

from __future__ import annotations

import inspect
import subprocess
import sys

import runtime_job


def test_all_names_exist() -> None:
    for name in runtime_job.__all__:
        assert hasattr(runtime_job, name), name
    assert len(set(runtime_job.__all__)) == len(runtime_job.__all__)


def test_every_public_member_is_documented() -> None:
    missing = []
    for name in runtime_job.__all__:
        obj = getattr(runtime_job, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                documentable = callable(member) or isinstance(
                    member, property | classmethod | staticmethod
                )
                if documentable and not inspect.getdoc(getattr(obj, attr)):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_reference_names_and_hierarchy() -> None:
    from runtime_job import exceptions as exc

    assert issubclass(exc.RuntimeJobTimeoutError, TimeoutError)
    assert issubclass(exc.RuntimeJobTimeoutError, exc.IBMRuntimeError)
    assert issubclass(exc.RequestsApiError, exc.ApiError)
    assert issubclass(exc.ApiError, exc.IBMError)
    assert not issubclass(exc.IBMNotAuthorizedError, exc.RequestsApiError)
    for name in exc.__all__:
        cls = getattr(exc, name)
        assert issubclass(cls, exc.RuntimeJobLibraryError), name
    err = exc.RuntimeJobFailureError("a\nb")
    assert str(err) == "a\nb" and err.message == "a\nb"


def test_imports_without_qiskit() -> None:
    code = (
        "import sys\n"
        "sys.modules['qiskit'] = None  # makes 'import qiskit' fail, as when it is absent\n"
        "import runtime_job\n"
        "from runtime_job import codec\n"
        "assert codec.loads(codec.dumps({'a': 1j})) == {'a': 1j}\n"
        "assert sys.modules['qiskit'] is None\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
