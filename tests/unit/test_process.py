"""The process-wide singleton behind the stream hub and the job watcher."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from runtime_job._process import ProcessSingleton


class Thing:
    def __init__(self) -> None:
        self.closed = False


def test_one_instance_until_it_is_closed() -> None:
    made: list[Thing] = []

    def factory() -> Thing:
        made.append(Thing())
        return made[-1]

    single = ProcessSingleton(factory, is_closed=lambda t: t.closed, at_exit=lambda t: None)
    assert single.current() is None
    first = single.get()
    assert single.get() is first and single.current() is first and len(made) == 1
    first.closed = True
    second = single.get()
    assert second is not first and len(made) == 2


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_closed_at_exit_quietly_and_kept_closed_while_exiting() -> None:
    result = _run(
        """
        import atexit
        from runtime_job._process import ProcessSingleton

        class Thing:
            closed = False

        def at_exit(thing):
            print("at_exit", thing is not None)
            thing.closed = True
            print("during exit, same instance:", single.get() is thing)
            raise RuntimeError("must not be printed")

        single = ProcessSingleton(Thing, is_closed=lambda t: t.closed, at_exit=at_exit)
        single.get()
        """
    )
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["at_exit True", "during exit, same instance: True"]
    assert result.stderr == ""


def test_at_exit_runs_even_without_an_instance() -> None:
    result = _run(
        """
        from runtime_job._process import ProcessSingleton
        ProcessSingleton(object, is_closed=lambda t: False, at_exit=lambda t: print("exit", t))
        """
    )
    assert result.stdout.strip() == "exit None" and result.returncode == 0


def test_a_forked_child_starts_afresh() -> None:
    result = _run(
        """
        import os
        from runtime_job._process import ProcessSingleton

        hooks = []
        single = ProcessSingleton(
            object, is_closed=lambda t: False, at_exit=lambda t: None,
            after_fork=lambda: hooks.append("forked"),
        )
        parent = single.get()
        pid = os.fork()
        if pid == 0:
            ok = single.current() is None and single.get() is not parent and hooks == ["forked"]
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), "parent kept", single.get() is parent)
        """
    )
    assert result.stdout.strip() == "child 0 parent kept True", result.stderr
