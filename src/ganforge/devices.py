"""Devices and random state: which device a run uses, its random streams, and how to name the hardware.

Part of the bottom layer (with :mod:`ganforge.config`, :mod:`ganforge.runfiles` and
:mod:`ganforge.storage`): it knows no training, so every layer may use it.
"""
from __future__ import annotations

import platform
import random

import torch


def pick_device(name: str) -> torch.device:
    """``auto``: a CUDA GPU, else Apple's MPS, else the CPU; any other name as torch spells it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def rng_state(device: torch.device) -> dict:
    """Every random stream a training process draws from (torch's, Python's, the GPU's)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_python_random_state(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_python_random_state(s):
    # torch.load(weights_only=True) gives lists back where random.getstate() had tuples.
    return (s[0], tuple(s[1]), s[2])


def hardware_description(device: torch.device) -> str:
    """The GPU's name, or the CPU's with the threads torch uses (summary.json, the report)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def memory_reading(peak_bytes: int) -> dict[str, float]:
    """A peak of GPU memory as the metrics line and ``summary.json`` record it: GiB, 3 decimals."""
    return {"gpu_mem_peak_gib": round(peak_bytes / 2**30, 3)}


class PeakMemory:
    """The most GPU memory PyTorch's tensors held (``torch.cuda.max_memory_allocated``): per metrics line
    (since the line before) and over the run.  Nothing on a CPU or MPS: the readings are empty there."""

    def __init__(self, device: torch.device):
        self.device = device
        self.run_peak = 0

    def since_last(self) -> dict[str, float]:
        if self.device.type != "cuda":
            return {}
        peak = torch.cuda.max_memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.run_peak = max(self.run_peak, peak)
        return memory_reading(peak)

    def over_run(self) -> dict[str, float]:
        if self.device.type != "cuda":
            return {}
        return memory_reading(max(self.run_peak, torch.cuda.max_memory_allocated(self.device)))
