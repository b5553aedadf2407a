"""JSON request bodies of the Engine API, built the way the Docker SDK builds them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ofelia_hookspecs.types import ContainerSpec, ServiceSpec


def environment_list(environment: Mapping[str, str] | None) -> list[str] | None:
    return [f"{key}={value}" for key, value in environment.items()] if environment else None


def exec_create(
    cmd: Sequence[str], *, user: str, tty: bool, environment: Mapping[str, str] | None, workdir: str | None
) -> dict[str, Any]:
    return {
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": tty,
        "Cmd": list(cmd),
        "Privileged": False,
        "User": user or "",
        "Env": environment_list(environment),
        "WorkingDir": workdir or None,
    }


def container_create(spec: ContainerSpec) -> dict[str, Any]:
    binds = [v for v in spec.volumes if ":" in v]
    anonymous = [v for v in spec.volumes if ":" not in v]
    host_config: dict[str, Any] = {}
    if binds:
        host_config["Binds"] = binds
    if spec.volumes_from:
        host_config["VolumesFrom"] = list(spec.volumes_from)
    if spec.network:
        host_config["NetworkMode"] = spec.network
    return {
        "Image": spec.image,
        "Cmd": list(spec.command) if spec.command is not None else None,
        "Entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
        "User": spec.user or None,
        "Tty": spec.tty,
        "OpenStdin": False,
        "StdinOnce": False,
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Env": environment_list(spec.environment),
        "WorkingDir": spec.working_dir or None,
        "Hostname": spec.hostname or None,
        "Labels": dict(spec.labels) or None,
        "Volumes": {path: {} for path in anonymous} or None,
        "NetworkDisabled": False,
        "HostConfig": host_config,
    }


def service_create(spec: ServiceSpec) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": spec.image, "TTY": spec.tty}
    if spec.command:
        # Like Ofelia: the command becomes the task's Command (it replaces the entrypoint).
        container["Command"] = list(spec.command)
    if spec.environment:
        container["Env"] = environment_list(spec.environment)
    if spec.user:
        container["User"] = spec.user
    if spec.labels:
        container["Labels"] = dict(spec.labels)
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "RestartPolicy": {"Condition": "none"},
    }
    if spec.network:
        template["Networks"] = [{"Target": spec.network}]
    body: dict[str, Any] = {
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": 1}},
    }
    if spec.name:
        body["Name"] = spec.name
    if spec.labels:
        body["Labels"] = dict(spec.labels)
    return body


__all__ = ["container_create", "environment_list", "exec_create", "service_create"]
