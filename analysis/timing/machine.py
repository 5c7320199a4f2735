"""The machine a result was measured on, recorded beside the numbers."""
from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "hardware"]

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict:
    """The machine a result came from: CPU model, usable cores, torch and Python versions."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    try:
        import torch

        torch_version = torch.__version__
        threads = torch.get_num_threads()
    except ImportError:
        torch_version, threads = "not installed", 0
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "torch": torch_version,
        "torch_threads": threads,
        "python": platform.python_version(),
    }
