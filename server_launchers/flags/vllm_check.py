"""Check vLLM command lines with vLLM's own argument parser. Runs INSIDE a vLLM virtualenv:

    <venv>/bin/python server_launchers/flags/vllm_check.py < cases.json

stdin: ``{"case name": ["--model", "m", "--kv-cache-dtype", "fp8", ...], ...}`` (serve args, without the
program). stdout: ``{"vllm_version": "...", "results": {"case name": null | "error text"}}``.

Beyond ``parse_args`` (flag spellings, choices, types) it checks what the parser leaves as free strings:
the quantization method is registered, the reasoning parser is registered, and the speculative config's
keys and method exist in ``SpeculativeConfig``; then ``AsyncEngineArgs.from_cli_args`` must accept the
namespace. Model loading (which needs weights) is not attempted. Standard library + vLLM only.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import typing


def _parser():
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # vLLM >= 0.2x moved the server CLI to entrypoints.launchers
        from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    except ImportError:  # older layout
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve")), validate_parsed_serve_args


def _literal_values(tp) -> set:
    out = set()
    for arg in typing.get_args(tp):
        if typing.get_origin(arg) is typing.Literal or isinstance(arg, type(typing.Literal["x"])):
            out |= _literal_values(arg)
        elif isinstance(arg, str):
            out.add(arg)
        else:
            out |= _literal_values(arg)
    return out


def main() -> None:
    cases = json.load(sys.stdin)
    import vllm
    from vllm.config.speculative import SpeculativeConfig, SpeculativeMethod
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.reasoning import ReasoningParserManager

    parser, validate = _parser()
    spec_fields = set(getattr(SpeculativeConfig, "__dataclass_fields__", {})) or set(
        getattr(SpeculativeConfig, "model_fields", {})
    )
    spec_methods = _literal_values(SpeculativeMethod)
    reasoning = set(getattr(ReasoningParserManager, "reasoning_parsers", {})) | set(
        getattr(ReasoningParserManager, "lazy_parsers", {})
    )
    results: dict[str, str | None] = {}
    for name, argv in cases.items():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                args = parser.parse_args(argv)
                validate(args)
            problems = []
            if args.quantization is not None and args.quantization not in QUANTIZATION_METHODS:
                problems.append(f"quantization {args.quantization!r} not in {sorted(QUANTIZATION_METHODS)}")
            if args.reasoning_parser and reasoning and args.reasoning_parser not in reasoning:
                problems.append(
                    f"reasoning parser {args.reasoning_parser!r} not registered: {sorted(reasoning)}"
                )
            sc = args.speculative_config
            if sc is not None:
                sc = dict(sc) if isinstance(sc, dict) else json.loads(sc)
                unknown = set(sc) - spec_fields
                if unknown:
                    problems.append(f"speculative config keys {sorted(unknown)} not in SpeculativeConfig")
                if sc.get("method") not in spec_methods:
                    problems.append(f"speculative method {sc.get('method')!r} not in {sorted(spec_methods)}")
            if not problems:
                AsyncEngineArgs.from_cli_args(args)
            results[name] = "; ".join(problems) or None
        except SystemExit as exc:
            results[name] = f"argparse exit {exc.code}: {err.getvalue().strip().splitlines()[-1:]}"
        except Exception as exc:  # noqa: BLE001 - report every failure as data
            results[name] = f"{type(exc).__name__}: {exc}"
    json.dump({"vllm_version": vllm.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
