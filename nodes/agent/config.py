"""The agent's configuration: a JSON file in Infernet's spirit, or the built-in demo set.

A bad config stops start-up with a ``ConfigError`` that names the field, so a
miner learns about a typo before the first job fails.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

RUNTIMES = ("process", "docker", "http")


class ConfigError(ValueError):
    """A config file or option the agent cannot run with; the message names the field."""


@dataclass(frozen=True)
class ContainerConfig:
    id: str
    runtime: str = "process"
    external: bool = True
    description: str = ""
    image: str = ""
    # process runtime: a Python entry point "module:function" (kept warm in worker
    # processes) or a command run once per job
    entrypoint: str = ""
    command: tuple[str, ...] = ()
    workers: int = 1
    # docker runtime: the service listens on 127.0.0.1:port (host networking)
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    gpus: bool = False
    # http runtime: a service the miner runs itself
    url: str = ""
    timeout_seconds: float = 300.0
    concurrency: int = 16
    allowed_ips: tuple[str, ...] = ()
    generates_proofs: bool = False
    models: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    startup_timeout_seconds: float = 60.0

    @property
    def display_image(self) -> str:
        if self.image:
            return self.image
        if self.entrypoint:
            return f"process:{self.entrypoint}"
        if self.command:
            return "process:" + " ".join(self.command)
        return self.url

    @cached_property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(ip, strict=False) for ip in self.allowed_ips]


@dataclass(frozen=True)
class RateLimitConfig:
    num_requests: int = 1000
    period: float = 1.0


@dataclass(frozen=True)
class AgentConfig:
    containers: tuple[ContainerConfig, ...]
    host: str = "127.0.0.1"
    port: int = 4000
    node_id: str = ""
    state_dir: str = ""
    rate_limit: RateLimitConfig = RateLimitConfig()
    max_body_bytes: int = 10 * 1024 * 1024
    max_pending_jobs: int = 1000
    max_finished_jobs: int = 10000
    result_ttl_seconds: float = 3600.0
    stream_first_chunk_gap_ms: float = 2.0
    chain_address: str = ""
    # what the node tells the marketplace when it enrols
    capacity: int = 8
    price_per_second_wei: str = "0"
    # private jobs: a new X25519 transport key this often; the old one opens requests for the grace
    transport_key_rotation_seconds: float = 86400.0
    transport_key_grace_seconds: float = 3600.0

    def container(self, container_id: str) -> ContainerConfig | None:
        return self._by_id.get(container_id)

    @cached_property
    def _by_id(self) -> dict[str, ContainerConfig]:
        return {c.id: c for c in self.containers}


def builtin_containers() -> tuple[ContainerConfig, ...]:
    """The demo containers every agent serves when started without a config."""
    base = "nodes.agent.builtin"
    return (
        ContainerConfig(
            id="echo",
            entrypoint=f"{base}:echo",
            description="Returns its input unchanged",
            workers=2,
            models=("echo",),
            tasks=("echo",),
        ),
        ContainerConfig(
            id="sleep",
            entrypoint=f"{base}:sleep",
            description='Sleeps for data["seconds"], reporting progress',
            workers=4,
            models=("sleep",),
            tasks=("sleep",),
        ),
        ContainerConfig(
            id="tokens",
            entrypoint=f"{base}:tokens",
            description="Streams its input text back word by word",
            workers=2,
            models=("tokens",),
            tasks=("text-generation",),
        ),
        ContainerConfig(
            id="embed",
            entrypoint=f"{base}:embed",
            description="Sentence embeddings with all-MiniLM-L6-v2 (optional install)",
            workers=1,
            models=("all-MiniLM-L6-v2",),
            tasks=("sentence-embedding",),
        ),
    )


def _coerce_container(raw: Any, index: int) -> ContainerConfig:
    where = f"containers[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    known = {f.name for f in fields(ContainerConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    values = dict(raw)
    if not isinstance(values.get("id"), str) or not values["id"]:
        raise ConfigError(f"{where}.id must be a non-empty string")
    for name in ("command", "allowed_ips", "models", "tasks"):
        if name in values:
            if not isinstance(values[name], list) or not all(isinstance(v, str) for v in values[name]):
                raise ConfigError(f"{where}.{name} must be a list of strings")
            values[name] = tuple(values[name])
    container = ContainerConfig(**values)
    if container.runtime not in RUNTIMES:
        raise ConfigError(f"{where}.runtime must be one of {', '.join(RUNTIMES)}")
    if container.runtime == "process" and bool(container.entrypoint) == bool(container.command):
        raise ConfigError(f"{where}: a process container needs exactly one of entrypoint or command")
    if container.runtime == "process" and container.entrypoint and ":" not in container.entrypoint:
        raise ConfigError(f"{where}.entrypoint must look like 'package.module:function'")
    if container.runtime == "docker" and (not container.image or not 0 < container.port < 65536):
        raise ConfigError(f"{where}: a docker container needs an image and a port")
    if container.runtime == "http" and not container.url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url must be an http(s) URL")
    if container.timeout_seconds <= 0 or container.workers < 1 or container.concurrency < 1:
        raise ConfigError(f"{where}: timeout_seconds, workers and concurrency must be positive")
    try:
        _ = container.networks  # parse the allow-list now, to refuse a bad one at start-up
    except ValueError as exc:
        raise ConfigError(f"{where}.allowed_ips: {exc}") from None
    return container


def load_config(path: str | Path | None = None, **overrides: Any) -> AgentConfig:
    """Read a config file (or none, for the built-in containers) and apply overrides.

    ``overrides`` come from the command line and win over the file; ``None`` values
    are ignored so that an option not given keeps the file's value.
    """
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError("the config must be a JSON object")
    raw.update({k: v for k, v in overrides.items() if v is not None})

    known = {f.name for f in fields(AgentConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown config fields: {', '.join(sorted(unknown))}")

    if "containers" in raw:
        if not isinstance(raw["containers"], list) or not raw["containers"]:
            raise ConfigError("containers must be a non-empty list")
        containers = tuple(_coerce_container(c, i) for i, c in enumerate(raw["containers"]))
    else:
        containers = builtin_containers()
    ids = [c.id for c in containers]
    if len(set(ids)) != len(ids):
        raise ConfigError("container ids must be unique")
    raw["containers"] = containers

    if "rate_limit" in raw and not isinstance(raw["rate_limit"], RateLimitConfig):
        limit = raw["rate_limit"]
        if not isinstance(limit, dict) or set(limit) - {"num_requests", "period"}:
            raise ConfigError("rate_limit must be {num_requests, period}")
        raw["rate_limit"] = RateLimitConfig(**limit)
    try:
        config = AgentConfig(**raw)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    if config.max_pending_jobs < 1 or config.max_finished_jobs < 1 or config.max_body_bytes < 1:
        raise ConfigError("max_pending_jobs, max_finished_jobs and max_body_bytes must be positive")
    if config.capacity < 1 or not str(config.price_per_second_wei).isdigit():
        raise ConfigError("capacity must be positive and price_per_second_wei a whole number of wei")
    if config.transport_key_rotation_seconds < 1 or config.transport_key_grace_seconds < 0:
        raise ConfigError("transport_key_rotation_seconds must be at least 1 and transport_key_grace_seconds not negative")
    if config.rate_limit.num_requests < 1 or config.rate_limit.period <= 0:
        raise ConfigError("rate_limit must allow at least one request per positive period")
    return config
