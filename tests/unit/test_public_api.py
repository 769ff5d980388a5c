"""The package exports what it promises, documented, and imports without qiskit.

The promise is the "Package root" list of ``docs/api.md``: ``runtime_job.__all__`` must be
exactly that list, every name must import, and every class and function must have a
docstring.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import runtime_job

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def documented_names() -> list[str]:
    """The names listed under "Package root" in ``docs/api.md``, in order."""
    text = API_DOC.read_text(encoding="utf-8")
    start = text.index("\n## Package root\n")
    end = text.index("\n## ", start + 1)
    return NAME.findall(text[start:end])


def test_all_is_exactly_the_documented_list() -> None:
    documented = documented_names()
    assert len(set(documented)) == len(documented), "a name is listed twice in docs/api.md"
    assert len(set(runtime_job.__all__)) == len(runtime_job.__all__), "a name twice in __all__"
    assert sorted(set(documented) - set(runtime_job.__all__)) == [], "documented, not exported"
    assert sorted(set(runtime_job.__all__) - set(documented)) == [], "exported, not documented"


def test_every_name_of_all_imports_in_a_fresh_interpreter() -> None:
    """``from runtime_job import X`` works for each name, lazy ones included, and ``*`` too."""
    code = (
        "import runtime_job\n"
        "names = list(runtime_job.__all__)\n"
        "for name in names:\n"
        "    exec(f'from runtime_job import {name}')\n"
        "star = {}\n"
        "exec('from runtime_job import *', star)\n"
        "assert sorted(set(star) - {'__builtins__'}) == sorted(names), sorted(star)\n"
        "print(len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(runtime_job.__all__))


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
