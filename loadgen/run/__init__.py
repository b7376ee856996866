"""A run: absolute-deadline pacing (``dispatch``), the conversation driver, one sender, stopping, the target, a fleet
of senders (``fleet/``) and the one run path that composes them (``runner``)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadgen.run.runner import RecordObserver, RecordTap, RunResult, run, run_async

__all__ = ["RecordObserver", "RecordTap", "RunResult", "run", "run_async"]


def __getattr__(name: str) -> Any:
    """``from loadgen.run import run_async`` still works, without importing the run path with every sender."""
    if name in __all__:
        from loadgen.run import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
