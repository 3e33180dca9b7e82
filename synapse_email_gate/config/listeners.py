"""Synapse listeners with `x_forwarded: true`: client addresses a client can choose.

The module is mounted on every `http` listener of its process (Synapse adds
module resources to each, whatever its `resources` say). On a listener with
`x_forwarded: true` Synapse replaces the peer address with the first entry of
`X-Forwarded-For` before the module sees the request, so unless the proxy in
front replaces that header, a client can write any address it likes there:
`banned_ips` and the per-IP rate limit then apply to the address it claims.

`forwarded_in_yaml` reads a homeserver.yaml (for `check-config`);
`forwarded_in_process` reads the running process's parsed config. Synapse gives
modules no public view of its listeners, so the latter reads the private
`ModuleApi._hs.config` defensively and finds nothing when that changes shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    # Only for the annotations: importing the module API installs Twisted's reactor,
    # and check-config reads listeners without Synapse running.
    from synapse.module_api import ModuleApi

logger = logging.getLogger(__name__)


@attrs.frozen
class Forwarded:
    """An http listener with `x_forwarded: true`."""

    where: str  # "port 8008" or "unix socket /run/synapse.sock"
    unix: bool

    def warning(self) -> str:
        advice = (
            "make the proxy replace the header (nginx: proxy_set_header X-Forwarded-For "
            "$remote_addr), not append to it"
            if self.unix
            else "set x_forwarded: false on it and name the proxy in the module's "
            "trusted_proxies instead"
        )
        return (
            f"the http listener on {self.where} has x_forwarded: true: Synapse takes the "
            "client address from X-Forwarded-For, which any client can write, so client "
            "IPs can be spoofed and banned_ips and the per-IP rate limit apply to whatever "
            f"address a client claims; {advice}"
        )


def forwarded_in_yaml(listeners: object) -> list[Forwarded]:
    """The `listeners` (or `worker_listeners`) of a homeserver.yaml."""
    if not isinstance(listeners, list):
        return []
    found = []
    for listener in listeners:
        if not isinstance(listener, Mapping) or listener.get("type") != "http":
            continue
        path = listener.get("path")
        unix = isinstance(path, str)
        # Synapse's default: on for a unix socket (there is no peer address), else off.
        if listener.get("x_forwarded", unix) is True:
            found.append(Forwarded(_where(listener.get("port"), path), unix))
    return found


def forwarded_in_process(api: ModuleApi) -> list[Forwarded]:
    """The listeners of this process (the main process's or this worker's)."""
    try:
        config: Any = api._hs.config  # private: Synapse has no public view of listeners
        worker = config.worker.worker_app is not None
        listeners = config.worker.worker_listeners if worker else config.server.listeners
        found = []
        for listener in listeners:
            options = getattr(listener, "http_options", None)
            if listener.type != "http" or options is None or options.x_forwarded is not True:
                continue
            path = getattr(listener, "path", None)
            found.append(Forwarded(_where(getattr(listener, "port", None), path), path is not None))
        return found
    except Exception as e:  # a Synapse whose private config looks different
        logger.debug("cannot read the listeners to check x_forwarded: %r", e)
        return []


def warn_about_forwarding(api: ModuleApi) -> None:
    for listener in forwarded_in_process(api):
        logger.warning("%s", listener.warning())


def _where(port: object, path: object) -> str:
    return f"unix socket {path}" if isinstance(path, str) else f"port {port}"
