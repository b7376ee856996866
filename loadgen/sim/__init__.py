"""loadgen.sim: a simulated OpenAI-compatible reasoning-model server with a continuous-batching engine model.

It is a simulator of a server's timing, scheduling and wire format, not a language model: its text is filler and its
``\\boxed{}`` answers are right with a modelled probability. Public API:

* ``SimConfig``, ``load_config(profile, file, overrides)``, ``PROFILES``: configuration.
* ``Engine``, ``SimRequest``, ``StepResult``: the pure engine model (no clock, no I/O).
* ``SimServer(config)``: ``await start(host, port) -> port``, ``await stop()``.
* ``python -m loadgen.sim``: the standalone server.
"""

from loadgen.sim.config import PROFILES, SimConfig, load_config
from loadgen.sim.engine import Engine, SimRequest, StepResult
from loadgen.sim.server import SimServer

__all__ = ["PROFILES", "Engine", "SimConfig", "SimRequest", "SimServer", "StepResult", "load_config"]
