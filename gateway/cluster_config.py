"""Checks of the cluster's settings (declared in invoker/config.py)."""

from __future__ import annotations

from typing import Any

SYNCHRONOUS_COMMIT = ("on", "remote_apply", "remote_write", "local", "off")


def check_cluster(config: Any) -> None:
    from .config import ConfigError

    if config.database is not None and not config.database.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"database must be a postgresql:// URL, got {_redacted(config.database)!r}")
    check_roles(config)
    if config.queue is not None and not config.queue.startswith("nats://"):
        raise ConfigError(f"queue must be a nats:// URL, got {_redacted(config.queue)!r}")
    if config.queue_ack_wait_s < 1:
        raise ConfigError(f"queue_ack_wait_s must be at least 1, got {config.queue_ack_wait_s:g}")
    if config.pg_synchronous_commit not in SYNCHRONOUS_COMMIT:
        raise ConfigError(
            f"pg_synchronous_commit must be one of {', '.join(SYNCHRONOUS_COMMIT)},"
            f" got {config.pg_synchronous_commit!r}"
        )


ROLES = ("all", "gateway", "invoker")
# A cluster token shorter than this is refused: it is the only key to the invokers.
MIN_CLUSTER_TOKEN = 16


def check_roles(config: Any) -> None:
    from .config import ConfigError

    if config.role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {config.role!r}")
    if config.role != "all":
        if config.database is None:
            raise ConfigError(f"role {config.role} needs database (postgresql://...): the cluster's registry")
        if not config.cluster_token:
            raise ConfigError(
                f"role {config.role} needs cluster_token (--cluster-token or FAAS_CLUSTER_TOKEN)"
            )
    if config.cluster_token is not None and len(config.cluster_token) < MIN_CLUSTER_TOKEN:
        raise ConfigError(f"cluster_token must be at least {MIN_CLUSTER_TOKEN} characters")
    if isinstance(config.workers, bool) or not isinstance(config.workers, int) or config.workers < 1:
        raise ConfigError(f"workers must be an integer of at least 1, got {config.workers!r}")
    if config.workers > 1 and config.role != "gateway":
        raise ConfigError("workers > 1 is for role gateway (an invoker owns its machine's sandboxes)")
    if config.advertise is not None:
        host, sep, port = config.advertise.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"advertise must be HOST:PORT, got {config.advertise!r}")
    elif config.role == "invoker" and config.host in ("0.0.0.0", "::", ""):
        raise ConfigError(
            f"an invoker listening on {config.host!r} needs advertise HOST:PORT (where gateways reach it)"
        )


def _redacted(url: str) -> str:
    """A URL without its password, fit for an error message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
