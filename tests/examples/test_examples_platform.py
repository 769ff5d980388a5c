"""The examples, with only ``channel="local"`` changed to ``channel="ibm_quantum_platform"``.

Each script is copied with that one argument changed and run against a local server speaking
the platform dialect: the token and URL come from the environment (``QISKIT_IBM_TOKEN``,
``QISKIT_IBM_URL``), as a user's would, except in ``custom_program.py``, which starts its own
server and passes them itself. ``streaming_callbacks.py`` is left out: it demonstrates interim
results, which the platform dialect does not have (``docs/platform.md``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_job.server import LocalRuntimeServer
from tests.support.server import local_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 180
TOKEN = "platform-examples-token-0123456789"
LOCAL = 'channel="local"'
PLATFORM = 'channel="ibm_quantum_platform"'
SKIPPED = {"streaming_callbacks.py": "interim results do not exist in the platform dialect"}
EXPECTED = {
    "quickstart.py": "Final result: 'Hello, World!'",
    "many_jobs_asyncio.py": "50 results in",
    "custom_decoder.py": "Decoded final result: Summary(count=3)",
    "custom_program.py": "Final result: {'launched': True, 'backend': 'local_simulator'",
    "v2_primitives.py": "Bell state: only 00 and 11, <ZZ> = <XX> = 1.",
}
SCRIPTS = sorted(
    path.name
    for path in EXAMPLES.glob("*.py")
    if LOCAL in path.read_text(encoding="utf-8") and path.name not in SKIPPED
)


@pytest.fixture(scope="module")
def platform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    with local_server(tmp_path_factory.mktemp("platform-examples"), tokens=[TOKEN]) as srv:
        yield srv


def test_every_script_on_the_local_channel_is_covered() -> None:
    assert set(SCRIPTS) == set(EXPECTED)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_runs_with_only_the_channel_changed(
    name: str, tmp_path: Path, platform_server: LocalRuntimeServer
) -> None:
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    assert source.count(LOCAL) == 1, "one channel argument to change"
    (tmp_path / name).write_text(source.replace(LOCAL, PLATFORM), encoding="utf-8")
    for helper in EXAMPLES.glob("*.py"):  # modules the scripts import (my_programs)
        if helper.name != name:
            shutil.copy(helper, tmp_path / helper.name)
    env = {
        **os.environ,
        "QISKIT_IBM_TOKEN": TOKEN,
        "QISKIT_IBM_URL": platform_server.url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    for variable in ("QISKIT_IBM_CHANNEL", "QISKIT_IBM_INSTANCE"):
        env.pop(variable, None)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert EXPECTED[name] in proc.stdout, proc.stdout
