"""The GPU beside the run: utilisation, memory, power and clocks of the machine's NVIDIA GPUs, on the scrape's ticks.

A local GPU engine's /metrics says what the engine thinks; the card says what it did. The scrape process reads
NVML (``pynvml``, from the ``nvidia-ml-py`` package) on every tick, right after the engine's /metrics, and puts the
readings into the same ``server_metrics.jsonl`` sample, so they share the run's clock and its reader. Without NVML
it asks ``nvidia-smi --query-gpu=... --format=csv`` (about 20 ms a call, so only at intervals >= 0.25 s).

``--gpu-metrics auto`` (the default) samples when the target is on this machine (a loopback URL) and NVML or
nvidia-smi finds a GPU; ``on`` insists (a warning when none is found), ``off`` never. Values per GPU, labelled
``gpu="<index>"``; the summary aggregates them (``gpu_section``)::

    gpu_utilization       fraction of the last sample period a kernel ran, 0..1
    gpu_memory_used_bytes device memory in use
    gpu_power_watts       board power draw
    gpu_sm_clock_mhz      SM clock
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from loadgen.scrape.series import GaugeSeries

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
# name -> (how GPUs add up in the summary, meaning)
GPU_VOCABULARY: dict[str, tuple[str, str]] = {
    "gpu_utilization": ("mean", "fraction of the sample period a kernel ran, 0..1 (mean over GPUs)"),
    "gpu_memory_used_bytes": ("sum", "device memory in use, bytes (sum over GPUs)"),
    "gpu_power_watts": ("sum", "board power draw, W (sum over GPUs)"),
    "gpu_sm_clock_mhz": ("mean", "SM clock, MHz (mean over GPUs)"),
}
_SMI_FIELDS = "index,utilization.gpu,memory.used,power.draw,clocks.sm"
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

Values = dict[str, dict[str, float]]


def is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK


class NvmlReader:
    """NVML handles opened once; ``read()`` is a few microseconds of C calls per GPU."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        nvml.nvmlInit()
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    def describe(self) -> dict[str, Any]:
        nv = self.nvml

        def text(x: Any) -> str:
            return x.decode() if isinstance(x, bytes) else str(x)

        cuda = nv.nvmlSystemGetCudaDriverVersion()
        return {
            "source": "nvml",
            "driver": text(nv.nvmlSystemGetDriverVersion()),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "devices": [
                {
                    "index": i,
                    "name": text(nv.nvmlDeviceGetName(h)),
                    "memory_total_bytes": int(nv.nvmlDeviceGetMemoryInfo(h).total),
                }  # fmt: skip
                for i, h in enumerate(self.handles)
            ],
        }

    def read(self) -> Values:
        nv = self.nvml
        out: Values = {name: {} for name in GPU_VOCABULARY}
        for i, h in enumerate(self.handles):
            key = f'gpu="{i}"'
            out["gpu_utilization"][key] = nv.nvmlDeviceGetUtilizationRates(h).gpu / 100.0
            out["gpu_memory_used_bytes"][key] = float(nv.nvmlDeviceGetMemoryInfo(h).used)
            out["gpu_power_watts"][key] = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            out["gpu_sm_clock_mhz"][key] = float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        return out

    def close(self) -> None:
        self.nvml.nvmlShutdown()


def parse_smi_csv(text: str) -> Values:
    """``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,power.draw,clocks.sm --format=csv,noheader,
    nounits`` as values (a field reading ``[N/A]`` is left out)."""
    out: Values = {name: {} for name in GPU_VOCABULARY}
    scale = {"gpu_utilization": 0.01, "gpu_memory_used_bytes": 1024.0 * 1024.0, "gpu_power_watts": 1.0,
             "gpu_sm_clock_mhz": 1.0}  # fmt: skip
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5:
            continue
        key = f'gpu="{cells[0]}"'
        for name, cell in zip(GPU_VOCABULARY, cells[1:], strict=True):
            try:
                out[name][key] = float(cell) * scale[name]
            except ValueError:
                pass
    return out


class SmiReader:
    """The fallback: one ``nvidia-smi`` call per read."""

    def __init__(self, run: Callable[..., Any] = subprocess.run) -> None:
        self.run = run
        self.read()  # fails here (OSError, CalledProcessError) when there is no GPU

    def describe(self) -> dict[str, Any]:
        return {"source": "nvidia-smi"}

    def read(self) -> Values:
        cmd = ["nvidia-smi", f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader,nounits"]
        out = self.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout
        return parse_smi_csv(out)

    def close(self) -> None:
        pass


def open_reader(mode: str, url: str, nvml: Any = None) -> NvmlReader | SmiReader | None:
    """A reader for ``mode`` and the scraped ``url``, or None (mode off, a remote target under auto, no GPU)."""
    if mode == "off" or (mode == "auto" and not is_local(url)):
        return None
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py
        return NvmlReader(nvml)
    except Exception as exc:  # ImportError, NVMLError (no driver, no GPU): try nvidia-smi
        reason = f"NVML: {type(exc).__name__}: {exc}"
    if shutil.which("nvidia-smi"):
        try:
            return SmiReader()
        except (OSError, subprocess.SubprocessError) as exc:
            reason += f"; nvidia-smi: {exc}"
    (log.warning if mode == "on" else log.debug)("no GPU metrics (%s)", reason)
    return None


def gpu_section(samples: Any, start_ns: int, end_ns: int) -> dict[str, Any] | None:
    """The summary's ``server.gpu``: time-weighted mean and max of each GPU series over the window (None when
    the run sampled no GPU). ``samples``: server columns or Sample objects."""
    out: dict[str, Any] = {}
    for name, (agg, _) in GPU_VOCABULARY.items():
        g = GaugeSeries.from_samples(samples, name, agg)
        if len(g):
            mean, top = g.mean(start_ns, end_ns), g.max(start_ns, end_ns)
            out[name] = {"mean": None if mean is None else round(float(mean), 4),
                         "max": None if top is None else round(float(top), 4)}  # fmt: skip
    if not out:
        return None
    out["aggregation"] = "time-weighted over the window; " + "; ".join(
        f"{n}: {m}" for n, (_, m) in GPU_VOCABULARY.items()
    )
    return out
