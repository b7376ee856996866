"""GPU readings beside /metrics: a fake NVML module (the real one runs on a GPU machine), nvidia-smi's CSV, and the
poller putting the readings into the same samples as a real llama-server text, on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

from aiohttp import web

from loadgen.records.columns import read_server
from loadgen.scrape import gpu as gpu_mod
from loadgen.scrape.gpu import NvmlReader, gpu_section, is_local, open_reader, parse_smi_csv
from loadgen.scrape.poller import MetricsPoller
from loadgen.scrape.summary import server_summary

DATA = Path(__file__).resolve().parents[1] / "data" / "llamacpp"


class FakeNvml:
    """pynvml's calls that NvmlReader makes, for two GPUs; utilisation follows ``util`` (percent per GPU)."""

    NVML_CLOCK_SM = 1

    def __init__(self, util=(50, 100)) -> None:
        self.util = list(util)
        self.shut = False

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int):  # noqa: N802
        return SimpleNamespace(gpu=self.util[h], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: int):  # noqa: N802
        return SimpleNamespace(used=(h + 1) * 2**30, total=80 * 2**30)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:  # noqa: N802
        return 300_000 + h * 100_000  # milliwatts

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:  # noqa: N802
        assert kind == self.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetName(self, h: int) -> bytes:  # noqa: N802
        return b"NVIDIA H100 80GB HBM3"

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return 13000


def test_nvml_reader_units_and_description() -> None:
    r = NvmlReader(FakeNvml())
    v = r.read()
    assert v["gpu_utilization"] == {'gpu="0"': 0.5, 'gpu="1"': 1.0}
    assert v["gpu_memory_used_bytes"] == {'gpu="0"': 2.0**30, 'gpu="1"': 2.0**31}
    assert v["gpu_power_watts"] == {'gpu="0"': 300.0, 'gpu="1"': 400.0}
    assert v["gpu_sm_clock_mhz"]['gpu="1"'] == 1980.0
    d = r.describe()
    assert d["cuda_driver"] == "13.0" and d["driver"] == "580.159.04"
    assert d["devices"][1] == {"index": 1, "name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 80 * 2**30}


def test_smi_csv_fallback_parses_and_skips_na() -> None:
    v = parse_smi_csv("0, 87, 40960, 612.35, 1980\n1, 3, 512, [N/A], 345\n")
    assert v["gpu_utilization"] == {'gpu="0"': 0.87, 'gpu="1"': 0.03}
    assert v["gpu_memory_used_bytes"]['gpu="0"'] == 40960 * 2**20
    assert v["gpu_power_watts"] == {'gpu="0"': 612.35}  # [N/A] left out, not zero


def test_modes_pick_a_reader_only_for_a_local_target() -> None:
    assert is_local("http://127.0.0.1:8000/metrics") and not is_local("http://10.0.0.5:8000/metrics")
    assert open_reader("off", "http://127.0.0.1:1/metrics", FakeNvml()) is None
    assert open_reader("auto", "http://10.0.0.5:1/metrics", FakeNvml()) is None
    assert isinstance(open_reader("auto", "http://127.0.0.1:1/metrics", FakeNvml()), NvmlReader)
    assert isinstance(open_reader("on", "http://10.0.0.5:1/metrics", FakeNvml()), NvmlReader)


def test_poller_puts_gpu_readings_in_the_engines_samples(tmp_path: Path, monkeypatch) -> None:
    fake = FakeNvml(util=(20, 20))
    monkeypatch.setattr(gpu_mod, "open_reader", lambda mode, url: NvmlReader(fake) if mode != "off" else None)
    monkeypatch.setattr("loadgen.scrape.poller.open_reader", gpu_mod.open_reader)
    text = (DATA / "metrics_after_load.txt").read_bytes()
    slots = b'[{"id":0,"n_ctx":4096,"is_processing":true,"n_prompt_tokens":1024}]'
    sink = tmp_path / "server_metrics.jsonl"

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=text, content_type="text/plain")

    async def slots_page(_: web.Request) -> web.Response:
        return web.Response(body=slots, content_type="application/json")

    async def main() -> MetricsPoller:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/slots", slots_page)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        poller = MetricsPoller([f"http://127.0.0.1:{port}/metrics"], 0.05, sink_path=sink,
                               t0_ns=time.perf_counter_ns(), gpu_metrics="auto")  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        for _ in range(200):  # bounded: until 4 samples, the second half at 80 % utilisation
            await asyncio.sleep(0.02)
            if sink.exists() and sink.read_bytes().count(b"\n") >= 2:
                fake.util = [80, 80]
            if sink.exists() and sink.read_bytes().count(b"\n") >= 4:
                break
        stop.set()
        await task
        await runner.cleanup()
        return poller

    poller = asyncio.run(main())
    assert poller.stats["gpu"]["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    cols = read_server(sink)
    assert len(cols) >= 4
    t = cols.t_ns
    s = server_summary(cols, (int(t[0]), int(t[-1])))
    assert s["dialect"] == "llamacpp" and s["kv_cache_usage"]["max"] == 0.25  # /slots kept beside the GPU
    g = s["gpu"]
    assert g["gpu_utilization"]["max"] == 0.8
    assert 0.2 <= g["gpu_utilization"]["mean"] <= 0.8
    assert g["gpu_power_watts"]["max"] == 700.0  # summed over the 2 GPUs
    assert g["gpu_sm_clock_mhz"]["mean"] == 1980.0  # averaged over them
    assert gpu_section(cols, int(t[0]), int(t[-1])) == g


def test_no_gpu_section_without_readings() -> None:
    from loadgen.scrape.series import Sample

    samples = [Sample(i * 10**9, i * 10**9, "u", "llamacpp", {"num_running": {"": 1.0}}) for i in range(3)]
    assert gpu_section(samples, 0, 2 * 10**9) is None
    assert all(v == {} for v in parse_smi_csv("No devices were found\n").values())
