"""Fixtures of the web app's tests."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def optimiser_held(monkeypatch):
    """The web worker's optimisation held back until the test sets the event this returns (set at the end in any
    case), so a test can look at a job between its start and its first step. Request it after the fixture that
    starts the server, so it lets go before the server stops."""
    from stylelab.web import worker

    go = threading.Event()
    stylize = worker.stylize

    def held(*args, **kwargs):
        if not go.wait(120):
            raise AssertionError("the optimiser was held for 120 s")
        return stylize(*args, **kwargs)

    monkeypatch.setattr(worker, "stylize", held)
    yield go
    go.set()
