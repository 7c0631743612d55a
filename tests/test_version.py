"""The version: one number, from the installed distribution's metadata, on the command line too."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import metadata, version

import pytest

import poetry_endpoints
from conftest import run_main, subprocess_env


def test_version_is_the_installed_distributions() -> None:
    assert poetry_endpoints.__version__ == version("poetry_endpoints")
    assert poetry_endpoints.__version__ != "0+unknown"


def test_metadata_states_the_license_as_spdx_and_the_classifiers() -> None:
    meta = metadata("poetry_endpoints")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    classifiers = meta.get_all("Classifier") or []
    assert "Framework :: Twisted" in classifiers
    assert "Typing :: Typed" in classifiers


@pytest.mark.parametrize("args", [["--version"], ["get", "--version"], ["serve", "--version"]])
def test_version_option_prints_name_and_version_and_exits_0(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # In process: --version exits before the reactor runs.
    status, out, err = run_main(args, capsys)
    assert status == 0, err
    assert out == f"poetry-endpoints {poetry_endpoints.__version__}\n"
    assert err == ""


def test_version_option_from_the_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poetry_endpoints", "--version"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"poetry-endpoints {poetry_endpoints.__version__}\n"
    assert result.stderr == ""
