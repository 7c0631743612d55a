"""
Every option of every command, given bad values: a usage error, one line
naming the option, never a traceback.

``poetry-endpoints get``/``serve``/``proxy``/``demo`` are checked through
their argparse parser in this process (the process adds nothing to a parse
error), ``twist poetry``/``poetry-proxy`` through their ``usage.Options``;
one run per command checks the whole path, in this process too: the command
line from ``main`` to its exit status 2 (``tests/inprocess.py``), and
Twisted's ``Twist.main`` to twist's 64 (``tests/inprocess_serve.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from inprocess import Ran, run_cli
from inprocess_serve import twist_here
from twisted.python import usage

from poetry_endpoints import options
from poetry_endpoints.cli import build_parser
from poetry_endpoints.cli.proxy import proxy_config
from poetry_endpoints.defaults import DEFAULT_IDLE_TIMEOUT, DEFAULT_PROXY_TIMEOUT
from poetry_endpoints.servers import proxytap, tap

HUGE = "9" * 5000  # more digits than int() converts
SECONDS = ["-1", "inf", "-inf", "nan", "", " ", "soon", "1e999", "--"]
DURATION = ["-1", "inf", "nan", "", "soon", "1e999"]
COUNT = ["0", "-1", "", "x", "1.5", "inf", "nan", HUGE]
COUNT_FROM_0 = ["-1", "", "x", "1.5", "inf", "nan", HUGE]
SIZE = ["0", "-1", "", "x", "12X", "1T", "inf", "nan", HUGE]
SIZE_FROM_0 = [value for value in SIZE if value != "0"]
LISTEN = ["", "tcp:abc", "tpc:1", "unix:", "tcp:0:bogus=1", "ssl:0:certKey=/nonexistent"]
UPSTREAM = ["", "tpc:localhost:1", "tcp:nohost", "ftp://127.0.0.1/", "a\nb"]


def files(tmp: Path) -> list[str]:
    """Paths that cannot be a readable file: missing, a directory, empty."""
    return [str(tmp / "nonexistent"), str(tmp), ""]


def pem_files(tmp: Path) -> list[str]:
    """Paths that cannot be a CA: those of L{files}, and a readable file holding no PEM."""
    not_pem = tmp / "not.pem"
    not_pem.write_text("not a certificate\n")
    return [*files(tmp), str(not_pem)]


# command -> (argv the bad option is added to, {option: bad values}); "FILES"
# and "PEMS" stand for the paths made under tmp_path.
TABLE: dict[str, tuple[list[str], dict[str, Any]]] = {
    "get": (
        ["tcp:127.0.0.1:1"],
        {
            "--timeout": SECONDS,
            "--idle-timeout": SECONDS,
            "--max-bytes": SIZE,
            "--concurrency": COUNT,
            "--retries": COUNT_FROM_0,
            "--encoding": ["", "no-such-codec", "a\x1bb"],
            "--errors": ["", "ignore"],
            "--cacert": "PEMS",
        },
    ),
    "serve": (
        [],
        {
            "--listen": LISTEN,
            "--http": LISTEN,
            "--delay": DURATION,
            "--num-bytes": COUNT,
            "--fault": ["", "nope"],
            "POEM_FILE": "FILES",
        },
    ),
    "proxy": (
        ["-u", "tcp:127.0.0.1:1"],
        {
            "--upstream": UPSTREAM,
            "--listen": LISTEN,
            "--cache-seconds": DURATION,
            "--cache-max-bytes": SIZE_FROM_0,
            "--max-bytes": SIZE,
            "--timeout": SECONDS,
            "--idle-timeout": SECONDS,
            "--write-timeout": SECONDS,
            "--max-clients": COUNT,
            "--cacert": "PEMS",
        },
    ),
    "demo": ([], {}),
}
# Checked when a run starts, each bad one a line of its own: the sources (all
# of them, before anything connects, with those of -i files), the output
# directory (made then) and the output file's folder; test_cli_get and
# test_cli_output cover them.
CHECKED_AT_RUN = {
    ("get", "--output-dir"),
    ("get", "SOURCE"),
    ("get", "--input"),
    ("get", "--output"),
}
TWIST = {"poetry": tap.Options, "poetry-proxy": proxytap.Options}
TWIST_BASE = {"poetry": [], "poetry-proxy": ["-u", "tcp:127.0.0.1:1"]}
TWIST_TABLE = {
    "poetry": dict(TABLE["serve"][1]),
    "poetry-proxy": dict(TABLE["proxy"][1]),
}


def _values(spec: Any, tmp: Path) -> list[str]:
    if spec == "FILES":
        return files(tmp)
    if spec == "PEMS":
        return pem_files(tmp)
    return list(spec)


def _argv(option: str, value: str, base: list[str]) -> list[str]:
    if option == "POEM_FILE":
        return [*base, value]
    return [*base, f"{option}={value}"]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def test_the_table_names_every_option_that_takes_a_value() -> None:
    # A new option joins the table, or this fails: "every option" stays true.
    for command, parser in _subparsers().items():
        taking_values = set()
        for action in parser._actions:
            if action.nargs == 0 or action.dest in ("help", "version"):
                continue
            strings = action.option_strings
            taking_values.add(max(strings, key=len) if strings else action.metavar)
        at_run = {option for name, option in CHECKED_AT_RUN if name == command}
        tested = set(TABLE[command][1]) | at_run
        assert taking_values == tested, command
    for plugin, options_class in TWIST.items():
        instance = options_class()
        settings = instance._gather_parameters()[3]
        names = {f"--{name}" for name in settings} | {"--listen"}
        if plugin == "poetry":
            names |= {"--http", "POEM_FILE"}
        assert names == set(TWIST_TABLE[plugin]), plugin


@pytest.mark.parametrize("command", ["get", "serve", "proxy"])
def test_every_bad_value_is_one_line_naming_the_option_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, table = TABLE[command]
    parser = build_parser()
    checked = 0
    for option, spec in table.items():
        for value in _values(spec, tmp_path):
            argv = [command, *_argv(option, value, base)]
            with pytest.raises(SystemExit) as exited:
                parser.parse_args(argv)
            err = capsys.readouterr().err
            assert exited.value.code == 2, (argv, err)
            (line,) = err.splitlines() or [""]
            assert line.startswith(f"poetry-endpoints {command}: error: "), (argv, err)
            assert option in line, (argv, err)
            assert "Traceback" not in err
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("plugin", ["poetry", "poetry-proxy"])
def test_every_bad_twist_value_is_a_usage_error_naming_the_option(
    plugin: str, tmp_path: Path
) -> None:
    checked = 0
    for option, spec in TWIST_TABLE[plugin].items():
        for value in _values(spec, tmp_path):
            argv = _argv(option, value, TWIST_BASE[plugin])
            with pytest.raises(usage.UsageError) as raised:
                TWIST[plugin]().parseOptions(argv)
            message = str(raised.value)
            assert "\n" not in message and message.startswith(option), (argv, message)
            checked += 1
    assert checked >= 20


def _one_error_line(result: Ran) -> str:
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in stdout + stderr
    (line,) = stderr.splitlines()
    return line


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["get", "--cacert", "/nonexistent", "tcp:127.0.0.1:1"], "--cacert"),
        (["serve", "--num-bytes", "0"], "--num-bytes"),
        (["proxy", "--cacert", "/nonexistent", "-u", "tcp:127.0.0.1:1"], "--cacert"),
    ],
)
def test_the_command_exits_2_with_one_line(argv: list[str], option: str) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    line = _one_error_line(result)
    assert line.startswith(f"poetry-endpoints {argv[0]}: error: ") and option in line


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["poetry", "--delay", "nan"], "--delay"),
        (["poetry-proxy", "-u", "tcp:127.0.0.1:1", "--cacert", "/nonexistent"], "--cacert"),
    ],
)
def test_twist_exits_64_with_one_error_line(argv: list[str], option: str, tmp_path: Path) -> None:
    status, output = twist_here(*argv)
    assert status == 64, output
    assert "Traceback" not in output
    # twist follows its one "Error:" line with the plugin's usage.
    (error,) = [line for line in output.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: {option}: ")


def test_the_same_value_means_the_same_thing_everywhere(tmp_path: Path) -> None:
    # 0 and none turn any timeout off; the defaults are the library's.
    parser = build_parser()
    for words in (["0"], ["none"], ["off"]):
        args = ["-u", "tcp:127.0.0.1:1", "--idle-timeout", *words, "-t", *words]
        cli_config = proxy_config(parser.parse_args(["proxy", *args]))
        twist_options = proxytap.Options()
        twist_options.parseOptions(args)
        assert cli_config == twist_options["config"]
        assert (cli_config.timeout, cli_config.idle_timeout) == (None, None)
        get = parser.parse_args(["get", "--idle-timeout", *words, "-t", *words, "x"])
        assert (get.timeout, get.idle_timeout) == (None, None)
    defaults = proxytap.Options()
    defaults.parseOptions(["-u", "tcp:127.0.0.1:1"])
    cli_defaults = proxy_config(parser.parse_args(["proxy", "-u", "tcp:127.0.0.1:1"]))
    assert cli_defaults == defaults["config"]
    assert (cli_defaults.timeout, cli_defaults.idle_timeout) == (
        DEFAULT_PROXY_TIMEOUT,
        DEFAULT_IDLE_TIMEOUT,
    )
    assert parser.parse_args(["get", "x"]).idle_timeout == DEFAULT_IDLE_TIMEOUT


def test_one_error_type_from_every_option_type() -> None:
    for parse, text in [
        (options.seconds, "0"),
        (options.timeout, "nan"),
        (options.duration, "-1"),
        (options.count(1), "0"),
        (options.count_or_none, "0"),
        (options.size, "0"),
        (options.size_from_0, "-1"),
        (options.readable_file, "/nonexistent"),
        (options.pem_file, "/nonexistent"),
        (options.listen, "tcp:abc"),
        (options.fault, "nope"),
        (options.upstream, "tpc:localhost:1"),
        (options.encoding, "no-such-codec"),
    ]:
        with pytest.raises(options.BadValue) as raised:
            parse(text)  # type: ignore[operator]
        assert "\n" not in str(raised.value)
