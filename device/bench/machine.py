"""What machine a result was measured on: board/CPU and its vector extensions, cores, load, RAM, OS, Python and the
runtimes' versions.

Read from /proc and package metadata only: describing the machine must not import torch (absent on a Pi).
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

_log = logging.getLogger(__name__)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def board_model() -> str | None:
    """'Raspberry Pi 5 Model B Rev 1.0' on a Pi (device tree); None on a PC."""
    return _read("/proc/device-tree/model").rstrip("\0\n ") or None


def cpu_model() -> str:
    """The CPU's name; on ARM boards /proc/cpuinfo often has no 'model name', so lscpu's answer comes next."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5,
                                 env={**os.environ, "LC_ALL": "C"}).stdout
            for line in out.splitlines():
                if line.startswith("Model name:"):
                    return line.split(":", 1)[1].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


# The extensions that decide how fast convolutions run (x86: AVX-512 and VNNI for int8; ARM: dot product).
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "asimd", "asimddp", "i8mm", "sve")


def cpu_flags() -> list[str]:
    """The notable vector extensions this CPU reports (/proc/cpuinfo 'flags' on x86, 'Features' on ARM)."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return [f for f in NOTABLE_FLAGS if f in have]
    return []


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine while it was measured."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def ram_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip().strip(chr(34))} (kernel {platform.release()})"
    return f"{platform.system()} {platform.release()}"


def short_gpu(name: str) -> str:
    return name.replace("NVIDIA ", "").replace("GeForce ", "")


def nvidia_gpus() -> list[str]:
    """GPU names from nvidia-smi (present with the NVIDIA driver, with or without torch)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnxruntime_info() -> dict:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return {"version": None, "providers": [], "error": str(e)}
    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def describe() -> dict:
    """The machine record stored with every result file."""
    ort = onnxruntime_info()
    return {
        "board": board_model(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "ram_gb": ram_gb(),
        "os": os_name(),
        "python": platform.python_version(),
        "onnxruntime": ort["version"],
        "onnxruntime_providers": ort["providers"],
        "torch": package_version("torch"),  # version only: importing it is slow
        "gpus": nvidia_gpus(),
    }


def default_label(info: dict) -> str:
    """A short column title: the board on a Pi, else the CPU (CUDA columns add the GPU's name)."""
    if info.get("board"):
        return info["board"].replace("Raspberry Pi", "Pi").split(" Rev ")[0].replace(" Model B", "")
    cpu = info.get("cpu") or "cpu"
    for noise in ("(R)", "(TM)", "CPU ", "Processor", "Intel Core ", "AMD "):
        cpu = cpu.replace(noise, "")
    return " ".join(cpu.split("@")[0].split())
