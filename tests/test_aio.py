"""
`poetry_endpoints.aio.twisted_reactor`, in fresh processes: a process has one
reactor, so each case is a small asyncio program of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import subprocess_env

PRELUDE = """\
import asyncio, threading
from twisted.internet.threads import deferToThread
from poetry_endpoints.aio import as_future, twisted_reactor
"""


def run_program(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_the_reactor_runs_inside_and_is_stopped_and_joined_after() -> None:
    result = run_program(
        """
        events = []

        async def main():
            async with twisted_reactor() as reactor:
                assert reactor.running
                reactor.addSystemEventTrigger("before", "shutdown", events.append, "before")
                reactor.addSystemEventTrigger("after", "shutdown", events.append, "after")
                # The thread pool (name lookups) only runs in a running reactor.
                assert await as_future(deferToThread(lambda: 6 * 7)) == 42
                assert threading.active_count() > 1
            assert not reactor.running
            assert threading.active_count() == 1, threading.enumerate()
            await asyncio.sleep(0.01)  # the loop still belongs to the program
            print("done", events)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done ['before', 'after']\n"
    assert result.stderr == ""


def test_an_exception_or_a_cancel_inside_still_stops_the_reactor() -> None:
    result = run_program(
        """
        async def failing():
            async with twisted_reactor() as reactor:
                await as_future(deferToThread(lambda: None))
                raise ValueError("the program's own error")

        async def main():
            try:
                await failing()
            except ValueError as e:
                print("raised", e)
            from twisted.internet import reactor
            print("running", reactor.running, "threads", threading.active_count())

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "raised the program's own error\nrunning False threads 1\n"

    result = run_program(
        """
        async def waiting(ready):
            async with twisted_reactor() as reactor:
                await as_future(deferToThread(lambda: None))
                ready.set()
                await asyncio.sleep(60)

        async def main():
            ready = asyncio.Event()
            task = asyncio.create_task(waiting(ready))
            await ready.wait()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                print("cancelled")
            from twisted.internet import reactor
            print("running", reactor.running, "threads", threading.active_count())

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "cancelled\nrunning False threads 1\n"


def test_an_installed_reactor_is_refused_with_a_clear_error() -> None:
    result = run_program(
        """
        from twisted.internet import reactor

        async def main():
            async with twisted_reactor():
                pass

        try:
            asyncio.run(main())
        except RuntimeError as e:
            print(e)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("a Twisted reactor is already installed (")
    assert "Reactor): twisted_reactor() installs its own" in result.stdout

    result = run_program(
        """
        async def main():
            async with twisted_reactor():
                pass
            try:
                async with twisted_reactor():
                    pass
            except RuntimeError as e:
                print(e)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "twisted_reactor() was already entered in this process, "
        "and a Twisted reactor cannot be started twice\n"
    )


def test_a_reactor_the_program_stopped_itself_is_left_stopped() -> None:
    result = run_program(
        """
        async def main():
            async with twisted_reactor() as reactor:
                await as_future(deferToThread(lambda: None))
                reactor.stop()
                await asyncio.sleep(0.05)
                print("inside", reactor.running)
            print("after", reactor.running, "threads", threading.active_count())

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inside False\nafter False threads 1\n"
