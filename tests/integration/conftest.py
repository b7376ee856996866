import asyncio

import pytest

from tests.scripted_server import ScriptedServer


@pytest.fixture
def scripted():
    """A fresh scripted server per test; the test adds scripts and starts it inside its own loop."""
    return ScriptedServer()


def run(coro):
    return asyncio.run(coro)
