"""Checks of the cluster's settings (declared in invoker/config.py)."""

from __future__ import annotations

from typing import Any

SYNCHRONOUS_COMMIT = ("on", "remote_apply", "remote_write", "local", "off")


def check_cluster(config: Any) -> None:
    from .config import ConfigError

    if config.database is not None and not config.database.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"database must be a postgresql:// URL, got {_redacted(config.database)!r}")
    if config.queue is not None and not config.queue.startswith("nats://"):
        raise ConfigError(f"queue must be a nats:// URL, got {_redacted(config.queue)!r}")
    if config.queue_ack_wait_s < 1:
        raise ConfigError(f"queue_ack_wait_s must be at least 1, got {config.queue_ack_wait_s:g}")
    if config.pg_synchronous_commit not in SYNCHRONOUS_COMMIT:
        raise ConfigError(
            f"pg_synchronous_commit must be one of {', '.join(SYNCHRONOUS_COMMIT)},"
            f" got {config.pg_synchronous_commit!r}"
        )


def _redacted(url: str) -> str:
    """A URL without its password, fit for an error message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
