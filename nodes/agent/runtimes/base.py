"""The one small interface every container runtime implements.

A runtime takes one call of one container and returns its output, reporting
progress and output chunks through ``on_event`` as they happen. It raises
``ContainerFailure`` for anything the container did wrong, and when the calling
task is cancelled (a job cancel or a timeout) it stops the work it started
before letting the cancellation through.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Union

from nodes.agent.config import ContainerConfig


@dataclass(frozen=True)
class Progress:
    fraction: float


@dataclass(frozen=True)
class Chunk:
    data: bytes


Event = Union[Progress, Chunk]
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class ContainerCall:
    job_id: str
    data: Any
    requires_proof: bool = False
    # true for the last container of a job submitted on /api/jobs/stream
    stream: bool = False


class Runtime(abc.ABC):
    def __init__(self, container: ContainerConfig) -> None:
        self.container = container

    async def start(self) -> None:
        """Bring the container up before the agent takes jobs for it."""

    async def stop(self) -> None:
        """Release everything ``start`` made."""

    @abc.abstractmethod
    async def run(self, call: ContainerCall, on_event: EventSink) -> Any:
        """Run one call and return the container's JSON output."""
