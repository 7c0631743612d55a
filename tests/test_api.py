"""The library's public names: they exist, with the signatures and defaults users rely on."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pathlib

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.testing import MemoryReactorClock

import poetry_endpoints
from poetry_endpoints import Poem, PoetryClient, PoetryError, PoetryProtocol, get_poetry

MiB = 1024 * 1024

SETTINGS = {
    "timeout": None,
    "idle_timeout": 60.0,
    "max_bytes": 16 * MiB,
    "encoding": None,
    "errors": "strict",
}


def test_public_names_are_exported() -> None:
    for name in ("get_poetry", "PoetryClient", "PoetryProtocol", "Poem", "PoetryError"):
        assert name in poetry_endpoints.__all__
        assert getattr(poetry_endpoints, name) is not None


def keyword_defaults(function: object) -> dict[str, object]:
    parameters = inspect.signature(function).parameters  # type: ignore[arg-type]
    return {
        name: p.default
        for name, p in parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_get_poetry_signature() -> None:
    parameters = inspect.signature(get_poetry).parameters
    positional = [
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert positional == ["reactor", "source"]
    defaults = keyword_defaults(get_poetry)
    for name, default in SETTINGS.items():
        assert name in defaults, name
        assert defaults[name] == default, name
        assert type(defaults[name]) is type(default), name


def test_poetry_client_signature() -> None:
    defaults = keyword_defaults(PoetryClient)
    for name, default in {**SETTINGS, "concurrency": 100, "retries": 0}.items():
        assert defaults.get(name, "missing") == default, name
    client = PoetryClient(MemoryReactorClock())
    assert (client.concurrency, client.retries, client.max_bytes) == (100, 0, 16 * MiB)
    assert (client.timeout, client.idle_timeout) == (None, 60.0)
    assert callable(client.get) and callable(client.get_many)


def test_the_settings_are_written_once_in_three_signatures() -> None:
    """
    C{PoetryClient}, C{ClientSettings.checked} and the C{ClientSettings}
    fields take the same keywords with the same defaults, C{get_poetry} a
    subset of them; each setting is a read-only attribute of the client.
    """
    client_keywords = keyword_defaults(PoetryClient)
    assert keyword_defaults(poetry_endpoints.ClientSettings.checked) == client_keywords
    fields = {
        f.name: f.default
        for f in dataclasses.fields(poetry_endpoints.ClientSettings)
        if f.name not in ("reactor", "endpoint_reactor")
    }
    assert fields == client_keywords
    one_off = keyword_defaults(get_poetry)
    assert one_off == {name: client_keywords[name] for name in one_off}
    client = PoetryClient(MemoryReactorClock(), retries=2, user_agent="x/1")
    for name in ("reactor", "endpoint_reactor", *client_keywords):
        assert getattr(client, name) is getattr(client.settings, name), name
        with pytest.raises(AttributeError):
            setattr(client, name, getattr(client, name))


def test_get_returns_a_deferred() -> None:
    reactor = MemoryReactorClock()
    d = get_poetry(reactor, "tcp:localhost")  # invalid: fails without connecting
    assert isinstance(d, Deferred)
    failures: list[object] = []
    d.addErrback(failures.append)
    assert len(failures) == 1
    d2 = PoetryClient(reactor).get("tcp:127.0.0.1:1")
    assert isinstance(d2, Deferred)
    d2.addErrback(lambda _: None)
    d2.cancel()


def test_poem_is_frozen_with_the_contract_fields() -> None:
    assert dataclasses.is_dataclass(Poem)
    names = [f.name for f in dataclasses.fields(Poem)]
    assert names[:4] == ["source", "data", "text", "elapsed"]
    poem = Poem("tcp:h:1", b"abc", "abc", 0.25)
    assert (poem.source, poem.data, poem.text, poem.elapsed) == ("tcp:h:1", b"abc", "abc", 0.25)
    for field in ("source", "data", "text", "elapsed"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(poem, field, None)
    # repr stays short: a poem's body does not flood logs.
    assert "x" * 100 not in repr(Poem("s", b"x" * 1000, "x" * 1000, 1.0))


def test_poetry_error() -> None:
    assert issubclass(PoetryError, Exception)
    error = PoetryError("tcp:127.0.0.1:1", "connect-failed", "could not connect:\nrefused")
    assert (error.source, error.kind) == ("tcp:127.0.0.1:1", "connect-failed")
    assert str(error) == "tcp:127.0.0.1:1: could not connect: refused"
    with pytest.raises(PoetryError):
        raise error


def test_error_kinds_are_the_contract_strings() -> None:
    assert set(poetry_endpoints.KINDS) == {
        "invalid-source",
        "connect-failed",
        "timeout",
        "incomplete",
        "too-large",
        "decode",
        "cancelled",
        "tls",
        "http-status",
    }


def test_poetry_protocol_is_a_protocol_owning_its_deferred() -> None:
    assert issubclass(PoetryProtocol, Protocol)
    assert not issubclass(PoetryProtocol, ClientFactory)
    protocol = PoetryProtocol("unix:/x", MemoryReactorClock())
    assert isinstance(protocol.finished, Deferred)
    other = PoetryProtocol("unix:/x", MemoryReactorClock())
    assert other.finished is not protocol.finished


def test_no_client_factory_in_the_package() -> None:
    """No module imports or uses ClientFactory (prose may still mention it)."""
    package = pathlib.Path(poetry_endpoints.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Name):
                names = [node.id]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = [alias.name.rsplit(".", 1)[-1] for alias in node.names]
            if "ClientFactory" in names:
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []
