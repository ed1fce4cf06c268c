"""Joining a Ray cluster, or starting a local one that only token holders can use (`serve` and `score`).

A local Ray's GCS, raylet, agent and worker ports listen on every interface whatever `--host` says
(Ray 2.60), and whoever reaches them can run code. Ray 2.52 added token authentication and 2.59 turned
it on by default for a cluster `ray.init()` starts; the `serve` extra needs Ray >= 2.59, and this module
refuses to start an unauthenticated local Ray on an older one unless the user chose so explicitly.
A cluster given by address has its own setting (RAY_AUTH_MODE on every node; KubeRay `authOptions`),
see examples/README.md.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"
# The first Ray whose ray.init() turns token auth on for the local cluster it starts.
TOKEN_AUTH_BY_DEFAULT = (2, 59)
UPGRADE_HINT = "pip install 'ray[serve,data]>=2.59' (or `pip install toolkit[serve]`)"


def connect(address: Optional[str], **local_options) -> bool:
    """Join the cluster at `address`, or start a token-authenticated local Ray with `local_options`.

    Returns:
        True when this call connected (the caller shuts Ray down), False when Ray was already up.

    Raises:
        ToolkitError: Ray cannot start or be reached, or it would start a local cluster without
            token authentication.
    """
    import ray

    if ray.is_initialized():
        return False
    if not address:
        check_local_auth(ray.__version__)
    try:
        if address:
            ray.init(address=address)
        else:
            ray.init(**local_options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ToolkitError(f"cannot start or reach {where} ({e}); start one with `ray start --head`, "
                           "or drop --address to run locally") from e
    return True


def auth_mode() -> str:
    """Whether this process's Ray uses token authentication: "token" or "disabled" (Ray sets the
    variable when it turns token auth on by default)."""
    return "token" if os.environ.get(AUTH_MODE_ENV, "").strip().lower() == "token" else "disabled"


def check_local_auth(ray_version: str) -> None:
    """Refuse a local Ray that would start without token auth; warn when the user turned it off.

    Raises:
        ToolkitError: RAY_AUTH_MODE is unset and this Ray does not enable token auth by default.
    """
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode is None and _version(ray_version) < TOKEN_AUTH_BY_DEFAULT:
        raise ToolkitError(
            f"Ray {ray_version} starts a local cluster without token authentication, and its ports listen on "
            f"every interface: {UPGRADE_HINT}, or set {AUTH_MODE_ENV}=token (Ray >= 2.52) before starting "
            f"toolkit ({AUTH_MODE_ENV}=disabled accepts the risk)")
    if mode is not None and mode.strip().lower() != "token":
        log.warning("%s=%s: the local Ray accepts any client that reaches its ports, and they listen on every "
                    "interface; unset it (or set it to token) unless the machine is isolated", AUTH_MODE_ENV, mode)


def _version(text: str) -> tuple[int, int]:
    parts = (text.split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except ValueError:
        return (0, 0)
