"""The CUDA llama-server route without a GPU: build flags and cache keys, the pruned source, GPU launch specs rendered
and checked against llama-server's own flag table, and the real-shape models' tensors and parameter counts."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

from server_launchers import llamacpp_cuda, local_llamacpp, tiny_gguf
from server_launchers.engines import (
    LLAMACPP_VERSION,
    UnsupportedOnEngine,
    docker_command,
    host_command,
    local_llamacpp_args,
)
from server_launchers.flags import flag_table
from server_launchers.lifecycle import EngineUnavailable
from server_launchers.spec import LaunchSpec, LaunchSpecError, load_specs

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ROOT / "workloads" / "presets" / "gpu-llamacpp.toml"


def check_against_table(argv: list[str], table: dict) -> list[str]:
    """Flags of ``argv`` that llama-server does not know, or a value outside a flag's choices."""
    bad, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            entry = table.get(a)
            if entry is None:
                bad.append(a)
            elif (
                entry["takes_value"]
                or entry.get("optional_value")
                and i + 1 < len(argv)
                and not argv[i + 1].startswith("-")
            ):
                i += 1
                if entry["choices"] and argv[i] not in entry["choices"]:
                    bad.append(f"{a} {argv[i]}")
        i += 1
    return bad


# ------------------------------------------------------------------------------------------ build
def test_cuda_arch_from_nvidia_smi_text_and_override() -> None:
    assert llamacpp_cuda.parse_compute_cap("9.0\n9.0\n") == "90"
    assert llamacpp_cuda.parse_compute_cap("  8.9\n") == "89"
    with pytest.raises(ValueError):
        llamacpp_cuda.parse_compute_cap("No devices were found")
    assert llamacpp_cuda.cuda_arch({"LOADGEN_CUDA_ARCH": "90a"}) == "90a"
    with pytest.raises(EngineUnavailable):
        llamacpp_cuda.cuda_arch({"LOADGEN_CUDA_ARCH": "sm_90"})


def test_cuda_build_flags_and_its_own_cache_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOADGEN_CACHE_DIR", str(tmp_path))
    flags = local_llamacpp.build_flags("90")
    assert "-DGGML_CUDA=ON" in flags and "-DCMAKE_CUDA_ARCHITECTURES=90" in flags
    assert (
        "-DLLAMA_BUILD_APP=OFF" in flags
        and "-DLLAMA_OPENSSL=OFF" in flags
        and "-DBUILD_SHARED_LIBS=OFF" in flags
    )
    assert not set(local_llamacpp.PORTABLE_X86) & set(flags)  # built where it runs: the host's vector units
    assert llamacpp_cuda.cuda_flags((), "90", ninja=True)[:2] == ["-G", "Ninja"]
    assert "-G" not in llamacpp_cuda.cuda_flags((), "90", ninja=False)
    cpu = local_llamacpp.build_flags(None)
    assert "-DGGML_CUDA=ON" not in cpu
    assert local_llamacpp.binary_path("90").parent.name == f"llama.cpp-{LLAMACPP_VERSION}-cuda-sm90"
    assert local_llamacpp.binary_path("90") != local_llamacpp.binary_path()


def _sdist(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = b"x"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_pruned_source_keeps_what_a_cpu_or_cuda_build_reads(tmp_path: Path) -> None:
    top = "llama_cpp_python-0.3.36/"
    v = top + "vendor/llama.cpp/"
    kept = [v + "CMakeLists.txt", v + "tools/server/CMakeLists.txt", v + "tools/mtmd/mtmd.cpp",
            v + "ggml/src/ggml-cuda/fattn.cu", v + "ggml/src/ggml-cpu/ggml-cpu.c", v + "ggml/src/ggml.c",
            v + "app/CMakeLists.txt", v + "scripts/build-info.sh", v + "common/arg.cpp"]  # fmt: skip
    dropped = [v + "docs/build.md", v + "models/ggml-vocab.gguf", v + "tests/test-x.cpp", v + "examples/a.cpp",
               v + "ggml/src/ggml-vulkan/v.cpp", v + "ggml/src/ggml-metal/m.m", top + "llama_cpp/llama.py",
               top + ".git/modules/vendor/llama.cpp/objects/pack/p.pack"]  # fmt: skip
    packed = llamacpp_cuda.pack_source(_sdist(tmp_path / "s.tar.gz", kept + dropped), tmp_path / "p.tar.gz")
    with tarfile.open(packed) as tar:
        assert sorted(tar.getnames()) == sorted(kept)
    src = llamacpp_cuda.extract_source(packed, tmp_path / "x")
    assert (src / "tools" / "server" / "CMakeLists.txt").is_file()


# ------------------------------------------------------------------------------------------ GPU specs
def test_gpu_presets_render_flags_llama_server_knows() -> None:
    table = flag_table("llamacpp", LLAMACPP_VERSION)
    specs = load_specs(PRESETS)
    assert {
        "baseline",
        "prefix-off",
        "kv-q8",
        "kv-q4",
        "draft-same",
        "draft-small",
        "slots16",
        "slots256",
    } <= set(specs)
    for s in specs.values():
        argv = host_command(s).argv[1:]
        assert check_against_table(argv, table) == [], (s.name, argv)
        local = local_llamacpp_args(s)
        assert check_against_table(local, table) == [], (s.name, local)
        assert "-ngl" not in local  # the CUDA route's defaults put every layer on the GPU
    joined = {n: " ".join(local_llamacpp_args(s)) for n, s in specs.items()}
    assert "-c 262144 -np 64" in joined["baseline"] and "-fa on" in joined["baseline"]
    assert "--no-cache-prompt" in joined["prefix-off"]
    assert "-ctk q4_0 -ctv q4_0" in joined["kv-q4"] and "-ctk q8_0 -ctv q8_0" in joined["kv-q8"]
    assert "--spec-type draft-simple --spec-draft-n-max 8 -md llama-draft -ngld all" in joined["draft-small"]
    assert "-np 256" in joined["slots256"] and "-c 1048576" in joined["slots256"]
    assert "-ngl all" in " ".join(host_command(specs["baseline"]).argv)


def test_llamacpp_only_settings_are_refused_elsewhere() -> None:
    s = LaunchSpec.from_dict({"model": "m", "kv_cache_dtype": "q8_0"})
    for engine in ("vllm", "sglang", "tgi"):
        with pytest.raises(UnsupportedOnEngine, match="llama.cpp"):
            docker_command(s.with_engine(engine))
    fa = LaunchSpec.from_dict({"model": "m", "flash_attention": True})
    with pytest.raises(UnsupportedOnEngine, match="flash_attention"):
        docker_command(fa)
    seqs = LaunchSpec.from_dict({"model": "m", "max_num_seqs": 32})
    assert "--max-num-seqs 32" in " ".join(docker_command(seqs).argv)
    assert "--max-running-requests 32" in " ".join(docker_command(seqs.with_engine("sglang")).argv)
    with pytest.raises(LaunchSpecError, match="max_num_seqs"):
        LaunchSpec.from_dict({"model": "m", "max_num_seqs": 0})
    with pytest.raises(LaunchSpecError, match="flash_attention"):
        LaunchSpec.from_dict({"model": "m", "flash_attention": "yes"})


def test_gpu_server_command_resolves_shapes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(local_llamacpp, "ensure_model", lambda shape=None: tmp_path / f"{shape}.gguf")
    spec = load_specs(PRESETS)["draft-same"]
    own = local_llamacpp.local_model(spec)
    assert own == {"model": "llama-1b", "model_name": "reasoning-llama-1b"}
    srv = local_llamacpp.LocalLlamaCppServer(local_llamacpp_args(spec), port=8123, gpu=True,
                                             binary=tmp_path / "llama-server", **own)  # fmt: skip
    srv.prepare()
    cmd = srv.command()
    assert cmd[1:3] == ["-m", str(tmp_path / "llama-1b.gguf")] and "reasoning-llama-1b" in cmd
    assert cmd[cmd.index("-md") + 1] == str(tmp_path / "llama-1b.gguf")
    assert cmd[cmd.index("-ngl") + 1] == "all" and cmd[cmd.index("-fa") + 1] == "on"
    # the spec's slots and context replace the defaults' (llama-server warns about a repeated flag)
    assert cmd.count("-np") == 1 and cmd[cmd.index("-np") + 1] == "64"
    assert cmd.count("-c") == 1 and cmd[cmd.index("-c") + 1] == "262144" and cmd.count("-fa") == 1
    assert "--no-kv-unified" in cmd and "--jinja" in cmd  # defaults the spec does not set stay
    # the CPU presets keep serving the tiny model under its own name
    cpu = LaunchSpec.from_dict({"model": "tiny-reasoning", "engine": "llamacpp"})
    assert local_llamacpp.local_model(cpu) == {}


# ------------------------------------------------------------------------------------------ models
def test_real_shapes_have_their_models_parameter_counts() -> None:
    # Llama-3.2-1B (tied embeddings) and Llama-3.1-8B as published: 1,235,814,400 and 8,030,261,248 parameters
    assert tiny_gguf.param_count(tiny_gguf.SHAPES["llama-1b"]) == 1_235_814_400
    assert tiny_gguf.param_count(tiny_gguf.SHAPES["llama-8b"]) == 8_030_261_248
    assert tiny_gguf.param_count(tiny_gguf.SHAPES["llama-draft"]) < 100_000_000
    shapes = dict(tiny_gguf.tensor_shapes(tiny_gguf.SHAPES["llama-8b"]))
    assert shapes["blk.31.attn_k.weight"] == (1024, 4096) and shapes["output.weight"] == (128256, 4096)
    assert "output.weight" not in dict(tiny_gguf.tensor_shapes(tiny_gguf.SHAPES["llama-1b"]))
    names = {tiny_gguf.model_file_name(p) for p in tiny_gguf.SHAPES.values()}
    assert len(names) == 3 and tiny_gguf.model_file_name() not in names


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the gguf package")
def test_a_scaled_real_shape_is_written_as_its_shapes_say(tmp_path: Path) -> None:
    import gguf

    p = {**tiny_gguf.SHAPES["llama-1b"], "hidden": 64, "layers": 2, "heads": 2, "kv_heads": 1, "ffn": 96,
         "vocab": 2000}  # fmt: skip
    info = tiny_gguf.write(tmp_path / "m.gguf", p)
    assert info["vocab_size"] == 2000
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    got = {t.name: tuple(int(x) for x in reversed(t.shape)) for t in r.tensors}
    assert got == dict(tiny_gguf.tensor_shapes(p))
    assert sum(int(t.n_elements) for t in r.tensors) == tiny_gguf.param_count(p)
    assert {t.tensor_type.name for t in r.tensors if len(t.shape) == 2} == {"F16"}


def test_defaults_merge_flag_by_flag() -> None:
    merged = local_llamacpp.merged_args(["--metrics", "-np", "4", "-fa", "on", "-c", "8192", "--jinja"],
                                        ["-c", "1024", "-fa", "off"])  # fmt: skip
    assert merged == ["--metrics", "-np", "4", "--jinja", "-c", "1024", "-fa", "off"]


def test_model_written_by_this_interpreter_keeps_its_python_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOADGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", "/carried/site")
    monkeypatch.setattr(local_llamacpp.importlib.util, "find_spec", lambda name: object())
    seen = []

    def fake_run(cmd, logf, what, *, env=None, cwd=None):
        seen.append((cmd, env))
        out = Path(cmd[2])
        out.write_bytes(b"GGUF")
        out.with_suffix(".json").write_text("{}")

    monkeypatch.setattr(local_llamacpp, "run_logged", fake_run)
    path = local_llamacpp.ensure_model("llama-draft")
    assert path.name.startswith("reasoning-llama-draft-") and path.is_file()
    ((cmd, env),) = seen
    assert str(cmd[0]) == local_llamacpp.sys.executable and cmd[-1] == "llama-draft"
    assert env is not None and env["PYTHONPATH"] == "/carried/site"


def test_a_spec_with_gpus_starts_the_cuda_route(monkeypatch) -> None:
    from server_launchers.lifecycle import Server
    from server_launchers.local_engines import local_server

    started = []

    def fake_start(self, *, detach=False):
        started.append(self)
        self.port, self.pgid = 8123, 4242
        return self

    monkeypatch.setattr(local_llamacpp.LocalLlamaCppServer, "start", fake_start)
    monkeypatch.setattr(local_llamacpp.LocalLlamaCppServer, "command", lambda self: ["llama-server"])
    for name, gpu in (("kv-q8", True), ("baseline", False)):
        spec = load_specs(PRESETS)[name]
        if not gpu:
            spec = LaunchSpec.from_dict({"model": "tiny-reasoning", "engine": "llamacpp"}, name=name)
        Server(spec, "local", local_server=local_server).start(detach=True)
        srv = started[-1]
        assert srv.gpu is gpu
        assert (srv.env_overrides.get("CUDA_VISIBLE_DEVICES") == "0") is gpu
        assert ("-ctk" in srv.extra_args) is gpu and (srv.model_name == "reasoning-llama-1b") is gpu
