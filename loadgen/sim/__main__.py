"""``python -m loadgen.sim``: run the simulated server until SIGTERM/SIGINT.

With ``--port 0`` the bound port is announced on stdout as exactly one line,
``loadgen.sim listening on http://HOST:PORT``, so a parent process can start it and read where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from loadgen.sim.config import METRICS_DIALECTS, PROFILES, REASONING_FIELDS, SimConfig, load_config, parse_set


def build_parser() -> argparse.ArgumentParser:
    d = SimConfig()  # the reasoning-7b profile's values: the defaults a flag overrides
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m loadgen.sim", description=__doc__.splitlines()[0]
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default %(default)s)")
    p.add_argument(
        "--profile", choices=sorted(PROFILES), default=None, help="engine profile (default reasoning-7b)"
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with sim settings (top level or [sim])")
    p.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="override any SimConfig field (repeatable)",
    )
    p.add_argument("--seed", type=int, help=f"seed of the simulated lengths and faults (default {d.seed})")
    p.add_argument(
        "--model-name", help=f"the model id served (default: the profile's, {d.model_name} for reasoning-7b)"
    )
    p.add_argument(
        "--reasoning-field",
        choices=REASONING_FIELDS,
        help=f"the delta field that carries reasoning text (default {d.reasoning_field})",
    )
    p.add_argument(
        "--metrics-dialect",
        choices=METRICS_DIALECTS,
        help=f"the /metrics names to expose (default {d.metrics_dialect})",
    )
    p.add_argument(
        "--ground-truth", metavar="FILE", help="append one JSON line per request (perf_counter_ns stamps)"
    )
    p.add_argument(
        "--spec",
        choices=("off", "ngram"),
        dest="spec_method",
        help=f"speculative decoding (default {d.spec_method})",
    )
    p.add_argument("--no-prefix-caching", action="store_true", help="turn prefix caching off (default on)")
    p.add_argument(
        "--enable-prompt-tokens-details",
        action="store_true",
        help="as vLLM's flag: the final usage carries prompt_tokens_details.cached_tokens when any were cached "
        "(loadgen's built-in simulator is started with it)",
    )
    faults = {
        "429": "answered HTTP 429", "500": "answered HTTP 500", "503": "answered HTTP 503",
        "cut": "whose stream is cut half-way", "stall": "whose stream stalls for --stall-ms",
        "slow_first_byte": "whose first byte waits --slow-first-byte-ms", "malformed": "with one malformed chunk",
        "stream_error": "ending with an error event in the stream",
    }  # fmt: skip
    for name, what in faults.items():
        p.add_argument(
            f"--fault-{name.replace('_', '-')}",
            type=float,
            metavar="SHARE",
            dest=f"fault_{name}",
            help=f"share of requests {what} (default {getattr(d, f'fault_{name}'):g})",
        )
    p.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started it is gone (loadgen passes this: a killed client leaves no server)",
    )
    p.add_argument("--stall-ms", type=float, help=f"length of a stall (default {d.stall_ms:g})")
    p.add_argument(
        "--slow-first-byte-ms",
        type=float,
        help=f"delay of a slow first byte (default {d.slow_first_byte_ms:g})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = parse_set(args.set)
        for name in ("seed", "model_name", "reasoning_field", "metrics_dialect", "ground_truth", "spec_method",
                     "stall_ms", "slow_first_byte_ms", "fault_429", "fault_500", "fault_503", "fault_cut",
                     "fault_stall", "fault_slow_first_byte", "fault_malformed", "fault_stream_error"):  # fmt: skip
            value = getattr(args, name)
            if value is not None:
                overrides.setdefault(name, value)
        if args.no_prefix_caching:
            overrides.setdefault("enable_prefix_caching", False)
        if args.enable_prompt_tokens_details:
            overrides.setdefault("enable_prompt_tokens_details", True)
        config = load_config(args.profile, args.config, overrides)
    except (ValueError, OSError) as e:
        print(f"loadgen.sim: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_serve(config, args.host, args.port, args.exit_with_parent))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"loadgen.sim: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    return 0


async def _serve(config: SimConfig, host: str, port: int, exit_with_parent: bool = False) -> None:
    from loadgen.sim.server import SimServer

    server = SimServer(config)
    bound = await server.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"loadgen.sim listening on http://{shown}:{bound}\n")
    sys.stdout.flush()
    watch = asyncio.create_task(_watch_parent(stop)) if exit_with_parent else None
    try:
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await server.stop()


async def _watch_parent(stop: asyncio.Event, interval_s: float = 0.5) -> None:
    """Set ``stop`` once the parent is gone (this process is re-parented: kill -9 or the OOM killer took it)."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        if os.getppid() != parent:
            stop.set()


if __name__ == "__main__":
    sys.exit(main())
