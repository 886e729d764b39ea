"""/resources reports the machine's real CPU, disk, OS and GPUs."""
import os
import platform
import shutil

from nodes.agent.hardware import parse_nvidia_smi
from tests.support.agent import start_agent

ECHO = {"containers": [{"id": "echo", "entrypoint": "nodes.agent.builtin:echo", "models": ["echo"], "tasks": ["echo"]}]}


def _capabilities(agent):
    resources = agent.get("/resources").json()
    return {c["capability_id"]: c for c in resources["echo"]["hardware_capabilities"]}


def test_resources_describe_this_machine(agent):
    resources = agent.get("/resources").json()
    assert set(resources) >= {"echo", "sleep", "upper"}
    service = resources["echo"]
    assert set(service) == {"service_id", "compute_capability", "hardware_capabilities"}
    capabilities = {c["capability_id"]: c for c in service["hardware_capabilities"]}
    cpu = capabilities["base"]["cpu_info"]
    assert cpu["architecture"] == platform.machine()
    assert cpu["num_cores"] == os.cpu_count() and len(cpu["cores"]) == os.cpu_count()
    assert all(isinstance(core, str) for core in cpu["cores"])
    assert cpu["model"] and cpu["vendor_id"] and cpu["byte_order"] in ("Little Endian", "Big Endian")
    (disk,) = capabilities["base"]["disk_info"]
    usage = shutil.disk_usage("/")
    assert disk["mount_point"] == "/" and disk["size"] == usage.total
    assert disk["used"] + disk["available"] <= disk["size"]
    assert capabilities["base"]["os_info"]["name"]
    gpu = capabilities["gpu"]
    if shutil.which("nvidia-smi") is None:
        assert gpu["gpu_info"] == [] and gpu["gpu_count"] == 0


def test_gpus_are_read_from_nvidia_smi_when_present(tmp_path):
    """nvidia-smi is the system edge; a stand-in on PATH prints what a two-GPU machine prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        "printf '0, NVIDIA H100 80GB HBM3, 81559, 1, 550.54.15\\n1, NVIDIA H100 80GB HBM3, 81559, 420, 550.54.15\\n'\n"
    )
    fake.chmod(0o755)
    agent = start_agent(tmp_path, ECHO, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        gpu = _capabilities(agent)["gpu"]
    finally:
        agent.stop()
    assert gpu["gpu_count"] == 2
    assert gpu["driver_version"] == "550.54.15"
    assert gpu["gpu_info"][0] == {
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total": 81559,
        "memory_used": 1,
        "vram_gb": 79.6,
        "cuda_device_id": 0,
        "driver_version": "550.54.15",
    }
    assert gpu["gpu_info"][1]["memory_used"] == 420


def test_a_failing_nvidia_smi_means_no_gpus_not_a_crash(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    agent = start_agent(tmp_path, ECHO, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        assert agent.get("/resources").status_code == 200
    finally:
        agent.stop()


def test_nvidia_smi_lines_that_are_not_gpus_are_skipped():
    assert parse_nvidia_smi("") == []
    assert parse_nvidia_smi("No devices were found\n") == []
    (gpu,) = parse_nvidia_smi("0, Tesla T4, 15360, 0, 535.1\n")
    assert gpu["vram_gb"] == 15.0


def test_gpu_figures_from_nvidia_smi_are_parsed_with_what_a_gpu_does_not_report_as_none():
    from nodes.agent.hardware import parse_gpu_telemetry

    output = "0, 37, 10240, 81559, 54\n1, [N/A], 812, 81559, [Not Supported]\nnot a gpu line\n"
    assert parse_gpu_telemetry(output) == [
        {"index": 0, "utilization_percent": 37, "memory_used_mib": 10240, "memory_total_mib": 81559, "temperature_c": 54},
        {"index": 1, "utilization_percent": None, "memory_used_mib": 812, "memory_total_mib": 81559,
         "temperature_c": None},
    ]
