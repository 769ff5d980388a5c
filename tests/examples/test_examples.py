"""The examples run: every ``examples/*.py`` as a script, and the quick-start notebook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 120

# A line each script must print; a new example must add its own here.
EXPECTED = {
    "quickstart.py": "Final result: 'Hello, World!'",
    "many_jobs_asyncio.py": "50 results in",
    "streaming_callbacks.py": "Streamed 5 interim results in order, each exactly once.",
    "custom_decoder.py": "Decoded final result: Summary(count=3)",
    "custom_program.py": "Final result: {'launched': True, 'backend': 'local_simulator'",
    "my_programs.py": "Returned: {'launched': True, 'backend': 'in-process', 'steps': 2}",
    "v2_primitives.py": "Bell state: only 00 and 11, <ZZ> = <XX> = 1.",
}

SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py"))


def test_every_script_has_an_expected_line() -> None:
    assert set(SCRIPTS) == set(EXPECTED)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_runs(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert EXPECTED[name] in proc.stdout, proc.stdout


def test_notebook_runs(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert not errors, errors

    def texts(cell: Any) -> str:
        parts: list[str] = []
        for out in cell["outputs"]:
            if "text" in out:
                parts.append(out["text"])
            parts.extend(str(value) for value in out.get("data", {}).values())
        return "\n".join(parts)

    assert "'Hello, World!'" in texts(code[1])  # job.result()
    assert "{'iteration': 3}" in texts(code[2])  # what the callback received
    assert any("text/html" in out.get("data", {}) for out in code[3].outputs)  # the job's HTML
    assert "Final result: 'Hello, World!'" in texts(code[-1])
