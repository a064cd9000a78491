"""app/protocol.py subclasses uvicorn's HttpToolsProtocol, which uvicorn does not publish as
an API (it documents `--http httptools` and `Config(http=<class>)`, not the class's insides),
because uvicorn offers no setting for header limits or slow-client deadlines with httptools.
These tests make the next uvicorn upgrade stop and ask for the subclass to be re-read, instead
of letting a changed callback silently drop a limit. The limits themselves are tested over a
real socket in test_edge.py."""

from __future__ import annotations

import inspect

import uvicorn
from uvicorn.protocols.http import httptools_impl

from app.protocol import LimitedHttpToolsProtocol, limited_protocol

# The uvicorn release app/protocol.py was last read against (Pipfile.lock pins it).
VERIFIED_UVICORN = "0.54.0"

# What the subclass reads or calls on its parent, beyond the methods it overrides.
PARENT_ATTRIBUTES = ("loop", "transport", "client", "cycle", "server_state")


def test_the_private_protocol_was_verified_against_the_installed_uvicorn() -> None:
    assert uvicorn.__version__ == VERIFIED_UVICORN, (
        f"uvicorn {uvicorn.__version__} is installed, and app/protocol.py subclasses its private "
        f"HttpToolsProtocol as read in {VERIFIED_UVICORN}. Re-read "
        "uvicorn/protocols/http/httptools_impl.py (the parser callbacks, connection events, "
        "self.cycle and its message_event, server_state.default_headers, STATUS_LINE), run "
        "test_edge.py, then set VERIFIED_UVICORN here. If uvicorn now offers header limits or "
        "request deadlines as settings, use them and delete the subclass "
        "(docs/development.md, 'Private internals')."
    )


def test_every_overridden_method_keeps_the_parents_signature() -> None:
    parent = httptools_impl.HttpToolsProtocol
    overridden = [
        name
        for name, member in vars(LimitedHttpToolsProtocol).items()
        if (inspect.isfunction(member) and not name.startswith("_")) or name == "__init__"
    ]
    assert {"on_header", "data_received", "connection_made"} <= set(overridden)
    for name in overridden:
        assert hasattr(parent, name), f"HttpToolsProtocol no longer has {name}"
        ours = list(inspect.signature(getattr(LimitedHttpToolsProtocol, name)).parameters)
        theirs = list(inspect.signature(getattr(parent, name)).parameters)
        if name == "__init__":
            assert ours == ["self", "args", "kwargs"]  # passes everything through
        else:
            assert ours == theirs, f"{name}: {theirs} in uvicorn, {ours} here"


def test_the_parent_still_sets_what_the_subclass_reads() -> None:
    source = inspect.getsource(httptools_impl.HttpToolsProtocol)
    for attribute in PARENT_ATTRIBUTES:
        assert f"self.{attribute} =" in source or f"self.{attribute}:" in source, attribute
    assert set(httptools_impl.STATUS_LINE) >= {408, 431}


def test_the_configured_class_is_a_protocol_uvicorn_accepts() -> None:
    protocol = limited_protocol(
        max_header_bytes=1024, max_header_fields=10, header_timeout=1.0, body_timeout=2.0
    )
    config = uvicorn.Config("app.main:app", http=protocol)
    assert config.http is protocol
    assert issubclass(protocol, httptools_impl.HttpToolsProtocol)
    assert (protocol.max_header_bytes, protocol.body_timeout) == (1024, 2.0)
