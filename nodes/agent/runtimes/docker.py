"""Docker containers, run as Infernet runs them: long-lived services started at boot.

Each configured container is started once with host networking and reached on
``127.0.0.1:<port>``; jobs are posted to its ``/service_output`` through the same
keep-alive pool as any HTTP service. Docker restarts a container that dies, so a
crash fails the job in flight and the next job finds the service back.
"""
from __future__ import annotations

import asyncio
import logging
import time

from nodes.agent.errors import ContainerFailure
from nodes.agent.runtimes.http import HttpServiceRuntime

log = logging.getLogger(__name__)


class DockerUnavailable(RuntimeError):
    """No engine, or no image: the agent cannot start a configured Docker container."""


class DockerRuntime(HttpServiceRuntime):
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.container.port}"

    @property
    def container_name(self) -> str:
        return f"infernet-agent-{self.container.id}-{self.container.port}"

    async def start(self) -> None:
        await asyncio.to_thread(self._start_container)
        await self._wait_until_listening()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await asyncio.to_thread(self._remove_container)

    def _client(self):
        import docker
        from docker.errors import DockerException

        try:
            client = docker.from_env()
            client.ping()
        except DockerException as exc:
            raise DockerUnavailable(
                f"container {self.container.id} needs Docker, but the Docker engine is not reachable: {exc}"
            ) from None
        return client

    def _start_container(self) -> None:
        from docker.errors import APIError, ImageNotFound
        from docker.types import DeviceRequest

        client = self._client()
        try:
            # checked first: containers.run would otherwise try to pull from a registry
            client.images.get(self.container.image)
        except ImageNotFound:
            raise DockerUnavailable(
                f"image {self.container.image} is not on this machine (docker pull or docker load it first)"
            ) from None
        self._remove_container(client)
        options = {
            "name": self.container_name,
            "detach": True,
            "network_mode": "host",
            "environment": {"PORT": str(self.container.port), **self.container.env},
            "restart_policy": {"Name": "always"},
            "labels": {"infernet-agent.container": self.container.id},
        }
        if self.container.command:
            options["command"] = list(self.container.command)
        if self.container.gpus:
            options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        try:
            client.containers.run(self.container.image, **options)
        except APIError as exc:
            raise DockerUnavailable(f"cannot start container {self.container.id}: {exc.explanation}") from None
        log.info("started docker container %s (%s)", self.container.id, self.container.image)

    def _remove_container(self, client=None) -> None:
        from docker.errors import DockerException, NotFound

        try:
            client = client or self._client()
            client.containers.get(self.container_name).remove(force=True)
        except NotFound:
            pass
        except (DockerException, DockerUnavailable) as exc:
            log.warning("could not remove container %s: %s", self.container_name, exc)

    async def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.container.startup_timeout_seconds
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.container.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise ContainerFailure(
            f"container {self.container.id} did not listen on 127.0.0.1:{self.container.port} "
            f"within {self.container.startup_timeout_seconds}s"
        )
