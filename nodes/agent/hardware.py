"""What this machine really has: CPU, disk, OS and GPUs, in Infernet's resource shapes.

GPUs come from ``nvidia-smi`` when it is on the PATH, else from torch when it is
installed with CUDA, else the list is empty: nothing here needs a GPU to run.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)


def _cpuinfo_fields() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in found:
            found[key] = value.strip()
    return found


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    info = _cpuinfo_fields()
    count = os.cpu_count() or 1
    return {
        "architecture": platform.machine(),
        "byte_order": "Little Endian" if sys.byteorder == "little" else "Big Endian",
        "cores": [str(i) for i in range(count)],
        "model": info.get("model name") or info.get("Model") or platform.processor() or "unknown",
        "num_cores": count,
        "vendor_id": info.get("vendor_id") or info.get("CPU implementer") or "unknown",
    }


def _filesystem_of(mount_point: str) -> str:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, fstype = "", "unknown"
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and mount_point.startswith(parts[1]) and len(parts[1]) >= len(best):
            best, fstype = parts[1], parts[2]
    return fstype


def disk_info(path: str = "/") -> list[dict]:
    """Disk figures change as jobs write, so they are read on every call (one statvfs)."""
    usage = shutil.disk_usage(path)
    return [
        {
            "available": usage.free,
            "filesystem": _filesystem_of(path),
            "mount_point": path,
            "size": usage.total,
            "used": usage.used,
        }
    ]


@lru_cache(maxsize=1)
def os_info() -> dict:
    name, version = platform.system(), platform.release()
    try:
        release = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        )
        name = release.get("NAME", name).strip('"')
        version = release.get("VERSION_ID", version).strip('"')
    except OSError:
        pass  # no os-release (not Linux, or a bare container): keep what platform says
    return {"name": name, "version": version}


NVIDIA_QUERY = "--query-gpu=index,name,memory.total,memory.used,driver_version"


def parse_nvidia_smi(output: str) -> list[dict]:
    """Parse ``nvidia-smi {NVIDIA_QUERY} --format=csv,noheader,nounits`` (memory in MiB)."""
    gpus = []
    for line in output.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 5:
            continue
        index, name, total, used, driver = parts[0], ",".join(parts[1:-3]), parts[-3], parts[-2], parts[-1]
        try:
            gpus.append(_gpu(name, int(float(total)), int(float(used)), int(index), driver))
        except ValueError:
            continue
    return gpus


def _gpu(name: str, total_mib: int, used_mib: int, device: int, driver: str = "") -> dict:
    return {
        "name": name,
        "memory_total": total_mib,
        "memory_used": used_mib,
        "vram_gb": round(total_mib / 1024, 1),
        "cuda_device_id": device,
        "driver_version": driver,
    }


TELEMETRY_QUERY = "--query-gpu=index,utilization.gpu,memory.used,memory.total,temperature.gpu"
_TELEMETRY_FIELDS = ("index", "utilization_percent", "memory_used_mib", "memory_total_mib", "temperature_c")


def _number(text: str) -> int | None:
    try:
        return round(float(text))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]": a figure this GPU does not report


def parse_gpu_telemetry(output: str) -> list[dict]:
    """Parse ``nvidia-smi {TELEMETRY_QUERY} --format=csv,noheader,nounits``: what each GPU is
    doing now (busy percent, memory in MiB, temperature in °C); a figure it does not report is None."""
    gpus = []
    for line in output.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != len(_TELEMETRY_FIELDS) or _number(parts[0]) is None:
            continue
        gpus.append(dict(zip(_TELEMETRY_FIELDS, (_number(part) for part in parts))))
    return gpus


def gpu_telemetry() -> list[dict]:
    """Each GPU's figures now, for the heartbeat; empty where there is no ``nvidia-smi`` (blocking:
    call it off the event loop)."""
    binary = shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        result = subprocess.run([binary, TELEMETRY_QUERY, "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi failed: %s", exc)
        return []
    return parse_gpu_telemetry(result.stdout) if result.returncode == 0 else []


def _gpus_from_nvidia_smi() -> list[dict] | None:
    binary = shutil.which("nvidia-smi")
    if not binary:
        return None
    try:
        result = subprocess.run(
            [binary, NVIDIA_QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi failed: %s", exc)
        return None
    if result.returncode != 0:
        log.warning("nvidia-smi exited %s: %s", result.returncode, result.stderr.strip())
        return None
    return parse_nvidia_smi(result.stdout)


def _gpus_from_torch() -> list[dict] | None:
    # importing torch costs seconds; only try where it is installed at all
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            free, total = torch.cuda.mem_get_info(index)
            gpus.append(_gpu(props.name, total // 2**20, (total - free) // 2**20, index))
        return gpus
    except Exception as exc:  # a broken CUDA install must not stop the agent
        log.warning("torch could not list GPUs: %s", exc)
        return None


@lru_cache(maxsize=1)
def gpu_info() -> list[dict]:
    """The GPUs, read once: they do not come and go while the agent runs."""
    for probe in (_gpus_from_nvidia_smi, _gpus_from_torch):
        gpus = probe()
        if gpus is not None:
            return gpus
    return []


def hardware_capabilities() -> list[dict]:
    """Infernet's ``HardwareCapability`` list: the machine (base) and its GPUs."""
    gpus = gpu_info()
    return [
        {
            "capability_id": "base",
            "cpu_info": cpu_info(),
            "disk_info": disk_info(),
            "os_info": os_info(),
        },
        {
            "capability_id": "gpu",
            "driver_version": gpus[0]["driver_version"] if gpus else "",
            "gpu_count": len(gpus),
            "gpu_info": gpus,
        },
    ]
