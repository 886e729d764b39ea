"""Build the Docker test image locally: busybox-static, a loopback listener and a shell handler.

No registry is reachable here, so the image is imported from a tar of a tiny root
file system instead of being pulled. Its tag carries a hash of its sources, so a
changed handler gives a new image and an unchanged one is built once.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPOSITORY = "marketplace-test/busybox-service"
BUSYBOX_APPLETS = ("sh", "head", "tr", "printf", "kill", "echo", "cat", "sleep")


def _busybox() -> Path:
    found = shutil.which("busybox")
    if not found:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    return Path(found)


def image_tag() -> str:
    digest = hashlib.sha256()
    for name in ("listener.c", "handler.sh", "build.py"):
        digest.update((HERE / name).read_bytes())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    archive.addfile(info, io.BytesIO(data))


def _rootfs_tar(listener: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            archive.addfile(info)
        _add(archive, "bin/busybox", _busybox().read_bytes())
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
        _add(archive, "listener", listener)
        _add(archive, "handler.sh", (HERE / "handler.sh").read_bytes())
    return buffer.getvalue()


def build_image(client) -> str:
    """Return the tag of the test image, importing it into Docker if it is not there yet."""
    from docker.errors import ImageNotFound

    tag = image_tag()
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    with tempfile.TemporaryDirectory() as workdir:
        binary = Path(workdir) / "listener"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(HERE / "listener.c")], check=True)
        data = _rootfs_tar(binary.read_bytes())
    repository, _, version = tag.partition(":")
    client.api.import_image_from_data(data, repository=repository, tag=version, changes=["ENV PATH=/bin"])
    return tag
