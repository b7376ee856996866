"""The collector settings dispatch changes are always put back, even when dispatch fails (issue 11)."""

import asyncio
import gc

import pytest

from loadgen.run import dispatch
from loadgen.run.dispatch import quiet_gc
from tests.integration.test_client import config, stream_writes
from tests.scripted_server import Script


def test_quiet_gc_restores_the_collector_when_the_body_raises():
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError), quiet_gc():
        assert gc.get_threshold()[0] == dispatch._GC_GEN0_THRESHOLD
        with quiet_gc():  # nested: changes and restores nothing
            pass
        assert gc.get_threshold()[0] == dispatch._GC_GEN0_THRESHOLD
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_a_run_whose_dispatch_raises_leaves_the_collector_as_it_found_it(scripted, tmp_path, monkeypatch):
    """A sweep runs many runs in one process: one failed dispatch must not keep the GC frozen for the rest."""
    from loadgen.run.runner import run_async

    async def broken(self, tfd):
        raise RuntimeError("dispatch bug")

    monkeypatch.setattr(dispatch.Dispatcher, "_dispatch_all", broken)
    scripted.default = Script(stream_writes())
    before = gc.get_threshold()
    gc.unfreeze()

    async def main():
        await scripted.start()
        try:
            await run_async(config(scripted, tmp_path, num_requests=3), install_signal_handlers=False)
        finally:
            await scripted.stop()

    with pytest.raises(RuntimeError, match="dispatch bug"):
        asyncio.run(main())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
