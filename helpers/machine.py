"""What machine is this, and which profile suits it. Introduced in 00_setup_and_gpu_check."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import PROFILES, ConfigError

COURSE_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "tokenizers",
                   "ipywidgets", "matplotlib", "rouge-score", "sacrebleu")


@dataclass
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]
    total_memory_gib: float

    @property
    def supports_bf16(self) -> bool:
        """Native bf16 needs compute capability 8.0 (Ampere). A T4 (7.5) only emulates it, slowly."""
        return self.compute_capability >= (8, 0)


def gpu_info() -> GpuInfo | None:
    """The first CUDA GPU, or None when there is none."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return GpuInfo(props.name, (props.major, props.minor), props.total_memory / 2**30)


def detect_profile() -> str:
    """`COURSE_PROFILE` if set, else from the hardware: no GPU -> tiny, capability < 8.0 -> t4, else ampere."""
    forced = os.environ.get("COURSE_PROFILE", "").strip()
    if forced:
        if forced not in PROFILES:
            raise ConfigError(f"COURSE_PROFILE={forced!r} is not a profile: use one of {', '.join(PROFILES)}")
        return forced
    gpu = gpu_info()
    if gpu is None:
        return "tiny"
    return "ampere" if gpu.supports_bf16 else "t4"


def in_colab() -> bool:
    return "google.colab" in sys.modules


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary() -> dict:
    """What a CPU measurement was made on: platform, CPU model and core count (benchmarks, robustness, the tiny
    model's manifest)."""
    return {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_cores": os.cpu_count()}


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries the course uses ('missing' where one is not installed)."""
    versions = {"python": platform.python_version()}
    for name in COURSE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def machine_report() -> dict:
    """Everything `python -m helpers check` prints: platform, GPU, the chosen profile and library versions."""
    import torch

    gpu = gpu_info()
    report = {
        "platform": platform.platform(),
        "colab": in_colab(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": None if gpu is None else {
            "name": gpu.name,
            "compute_capability": ".".join(map(str, gpu.compute_capability)),
            "memory_gib": round(gpu.total_memory_gib, 1),
            "bf16": gpu.supports_bf16,
        },
        "profile": detect_profile(),
        "profile_forced": bool(os.environ.get("COURSE_PROFILE")),
        "hf_token_available": hf_token() is not None,
        "versions": package_versions(),
    }
    return report


def hf_token() -> str | None:
    """A Hugging Face token from Colab secrets or the HF_TOKEN environment variable; never printed or saved."""
    token = os.environ.get("HF_TOKEN") or None
    if token is None and in_colab():
        try:
            from google.colab import userdata  # type: ignore[import-not-found]

            token = userdata.get("HF_TOKEN")
        except Exception:  # secret absent or notebook access not granted: carry on without a token
            token = None
    return token


def process_state():
    """This process's place among those `accelerate launch` started (one process when run plainly).

    On a machine without CUDA it must be asked for the CPU explicitly, or each process would think it is alone.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
