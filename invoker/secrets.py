"""Secrets: named values a function reads from /var/openfaas/secrets/NAME.

One interface (`SecretStore`, what the invoker uses) with two backends:
`FileSecretStore` here, a file per secret under the data directory
(`secrets/NAME`, mode 0600, in a directory of mode 0700, written whole or
not at all), and `PostgresSecretStore` (invoker/pg_secrets.py), shared by a
cluster. Both store a value the same way: with a key (`secrets_key_file`)
encrypted at rest with Fernet (AES-128-CBC and HMAC-SHA256, from the
`cryptography` package), without one as is. A value leaves this module only
towards a sandbox being specialized (`values`); everything else sees
`SecretInfo`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

import msgpack
from cryptography.fernet import Fernet, InvalidToken

from .errors import BadRequest, NotFound, SecretMissing, StartupError
from .model import SecretInfo
from .release_validate import SECRET_NAME_RE

MAX_SECRETS = 1000


class SecretStore:
    """What every backend shares: the view of every secret (its info and
    its stored bytes: the Fernet token or the value itself), the key, and
    the reads. A backend loads the view, writes through it, and keeps it
    current."""

    def __init__(self, key_file: str | None = None) -> None:
        self._key_file = key_file
        self._fernet: Fernet | None = None
        self._stored: dict[str, tuple[SecretInfo, bytes]] = {}

    @property
    def encrypting(self) -> bool:
        return self._fernet is not None

    def load(self) -> None:
        raise NotImplementedError

    def put(self, name: str, value: bytes) -> tuple[SecretInfo, bool]:
        """Create or replace (rotate) a secret; (its info, whether it is new)."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the backend holds open (nothing, for files)."""

    def exists(self, name: str) -> bool:
        return name in self._stored

    def list(self) -> list[SecretInfo]:
        return [info for info, _ in sorted(self._stored.values(), key=lambda entry: entry[0].name)]

    def info(self, name: str) -> SecretInfo:
        entry = self._stored.get(name)
        if entry is None:
            raise NotFound(f"secret {name!r} not found")
        return entry[0]

    def values(self, names: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
        """The values of `names`, for a sandbox being specialized."""
        out = []
        for name in names:
            entry = self._stored.get(name)
            if entry is None:
                raise SecretMissing(f"secret {name!r} was deleted: the function cannot start without it")
            info, stored = entry
            out.append((name, self._open(info, stored) if info.encrypted else stored))
        return tuple(out)

    def _load_key(self) -> None:
        if self._key_file:
            self._fernet = load_key(self._key_file)

    def _seal(self, value: bytes) -> bytes:
        """What is stored for `value`."""
        return self._fernet.encrypt(value) if self._fernet is not None else value

    def _open(self, info: SecretInfo, stored: bytes) -> bytes:
        """An encrypted secret's value; SecretMissing (at call time) when this
        server cannot read it (a cluster whose servers do not share the key)."""
        if self._fernet is None:
            raise SecretMissing(
                f"secret {info.name!r} is stored encrypted, but this server has no secrets_key_file to read it"
            )
        try:
            return self._fernet.decrypt(stored)
        except InvalidToken:
            raise SecretMissing(
                f"secret {info.name!r} cannot be decrypted with this server's secrets_key_file "
                "(every server sharing a database must have the same key file)"
            ) from None

    def _check_readable(self, info: SecretInfo, stored: bytes) -> None:
        """At start: StartupError for a stored secret the key given cannot read."""
        if not info.encrypted:
            return
        if self._fernet is None:
            raise StartupError(
                f"secret {info.name!r} is stored encrypted, but no secrets_key_file is set to read it"
            )
        try:
            self._fernet.decrypt(stored)
        except InvalidToken:
            raise StartupError(
                f"secret {info.name!r} cannot be decrypted with the key in secrets_key_file"
            ) from None


class FileSecretStore(SecretStore):
    """A server's own secrets, a file each under `root`."""

    def __init__(self, root: str, key_file: str | None = None) -> None:
        super().__init__(key_file)
        self.root = root

    def load(self) -> None:
        """Read every stored secret; encrypt those stored in the clear when a
        key is set. StartupError if one cannot be read with the key given."""
        self._load_key()
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if name.startswith(".") and name.endswith(".tmp"):  # a write cut short
                os.unlink(path)
            if not SECRET_NAME_RE.match(name):
                continue
            with open(path, "rb") as f:
                record = msgpack.unpackb(f.read())
            info = SecretInfo(name, record["size"], record["created_at"], record["updated_at"], record["enc"])
            stored = record["data"]
            self._check_readable(info, stored)
            self._stored[name] = (info, stored)
            if not info.encrypted and self._fernet is not None:
                self._write(name, stored, info.created_at)

    def put(self, name: str, value: bytes) -> tuple[SecretInfo, bool]:
        existing = self._stored.get(name)
        if existing is None and len(self._stored) >= MAX_SECRETS:
            raise BadRequest(f"too many secrets: at most {MAX_SECRETS}")
        created_at = existing[0].created_at if existing else time.time()
        return self._write(name, value, created_at), existing is None

    def delete(self, name: str) -> None:
        self.info(name)
        os.unlink(os.path.join(self.root, name))
        _sync_dir(self.root)
        del self._stored[name]

    def _write(self, name: str, value: bytes, created_at: float) -> SecretInfo:
        now = time.time()
        stored = self._seal(value)
        info = SecretInfo(name, len(value), created_at, now, self._fernet is not None)
        record = {"size": info.size_bytes, "created_at": created_at, "updated_at": now, "enc": info.encrypted}
        blob = msgpack.packb({**record, "data": stored}, use_bin_type=True)
        final = os.path.join(self.root, name)
        # Not a secret's name (those never start with '.'): a start removes it.
        staging = os.path.join(self.root, f".{name}.tmp")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, blob)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(staging)
            raise
        os.close(fd)
        os.rename(staging, final)
        _sync_dir(self.root)
        self._stored[name] = (info, stored)
        return info


def load_key(path: str) -> Fernet:
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as exc:
        raise StartupError(f"cannot read secrets_key_file {path}: {exc.strerror or exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise StartupError(
            f"secrets_key_file {path} is open to other users (mode {stat.S_IMODE(mode):04o}): chmod 600 it"
        )
    try:
        return Fernet(key)
    except ValueError:
        raise StartupError(
            f"secrets_key_file {path} must hold a Fernet key (32 bytes, URL-safe base64), e.g. from "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
