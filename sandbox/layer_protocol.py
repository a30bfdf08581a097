"""The messages that turn a blank sandbox into a layer's zygote, and that
ask it for sandboxes (sandbox/layer_zygote.py inside, sandbox/import_cache.py
outside).

On the sandbox's channel (frames, as in sandbox/protocol.py):

    invoker -> sandbox   BecomeLayerZygote (with the layer's mount fd and
                         the zygote's control socket), UsernsMapped
    sandbox -> invoker   UsernsReady, LayerReady, SetupFailed

On the control socket (SEQPACKET, one msgpack datagram each), as the main
zygote's: ForkRequest (with the new sandbox's channel fd) -> ForkReply,
sent by the new sandbox itself, whose host pid the kernel attaches
(SO_PASSCRED).

A layer zygote has run third-party code (the layer's imports): like a
sandbox's, every message it can send is type-checked field by field here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .protocol import MAX_STR_LEN, ProtocolError, Stamps, _stamps, _str

ROLE = "layer_zygote"
USERNS_READY = "userns_ready"
USERNS_MAPPED = "userns_mapped"
LAYER_READY = "layer_ready"
# A fork reply is an id and maybe a short error; anything larger is not one.
MAX_REPLY_BYTES = 8192
MAX_REQUEST_BYTES = 4096
MAX_MODULES = 1000


@dataclass(frozen=True, slots=True)
class BecomeLayerZygote:
    """Import the layer's packages and fork its functions' sandboxes. The
    layer's mount and the control socket travel with it as fds."""

    imports: tuple[str, ...]
    # The user namespace's uids (sandbox/spec.py UidMapping): its sandboxes
    # run as host uids first + 1 ... first + count - 1.
    uid_first: int
    uid_count: int
    hostname: str
    open_files_max: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": ROLE,
            "imports": list(self.imports),
            "uid_first": self.uid_first,
            "uid_count": self.uid_count,
            "hostname": self.hostname,
            "open_files_max": self.open_files_max,
        }

    @classmethod
    def from_wire(cls, msg: dict[str, Any]) -> BecomeLayerZygote:
        """From the invoker (trusted: only shapes are checked)."""
        return cls(
            tuple(str(name) for name in msg["imports"]),
            int(msg["uid_first"]),
            int(msg["uid_count"]),
            str(msg["hostname"]),
            int(msg["open_files_max"]),
        )


@dataclass(frozen=True, slots=True)
class LayerReady:
    """The layer's modules are imported (those that could be); forks may come."""

    imported: tuple[str, ...]
    # (module, why it could not be imported)
    failed: tuple[tuple[str, str], ...]
    logs: str = ""
    stamps: Stamps = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": LAYER_READY,
            "imported": list(self.imported),
            "failed": [list(pair) for pair in self.failed],
            "logs": self.logs,
            "stamps": [list(s) for s in self.stamps],
        }


def simple(kind: str) -> dict[str, Any]:
    """A message that is only its kind (UsernsReady, UsernsMapped)."""
    return {"t": kind}


def parse_layer_ready(msg: dict[str, Any]) -> LayerReady:
    """LayerReady from a layer zygote (untrusted): ProtocolError unless every
    field has its type."""
    imported, failed = msg.get("imported"), msg.get("failed")
    if (
        not isinstance(imported, list)
        or len(imported) > MAX_MODULES
        or not all(isinstance(m, str) and len(m) <= 256 for m in imported)
    ):
        raise ProtocolError("layer_ready.imported must be a list of module names")
    if (
        not isinstance(failed, list)
        or len(failed) > MAX_MODULES
        or not all(isinstance(f, list) and len(f) == 2 and all(isinstance(x, str) for x in f) for f in failed)
    ):
        raise ProtocolError("layer_ready.failed must be a list of [module, error]")
    return LayerReady(
        tuple(imported),
        tuple((name, error[:1024]) for name, error in failed),
        _str(msg, "logs", ""),
        _stamps(msg),
    )


@dataclass(frozen=True, slots=True)
class ForkRequest:
    id: int

    def pack(self) -> bytes:
        return msgpack.packb({"id": self.id})

    @classmethod
    def unpack(cls, data: bytes) -> ForkRequest:
        return cls(int(msgpack.unpackb(data)["id"]))


@dataclass(frozen=True, slots=True)
class ForkReply:
    """Sent by the new sandbox (its host pid comes with it, from the kernel),
    or by the layer zygote with the error that kept it from forking."""

    id: int
    error: str | None = None

    def pack(self) -> bytes:
        return msgpack.packb({"id": self.id, "error": self.error})

    @classmethod
    def unpack(cls, data: bytes) -> ForkReply:
        """From a layer zygote or its sandbox (untrusted)."""
        if len(data) > MAX_REPLY_BYTES:
            raise ProtocolError("fork reply too large")
        try:
            message = msgpack.unpackb(data, max_str_len=MAX_STR_LEN)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ProtocolError(f"undecodable fork reply: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("fork reply is not a map")
        request_id, error = message.get("id"), message.get("error")
        if type(request_id) is not int or not (error is None or isinstance(error, str)):
            raise ProtocolError("fork reply must be {id: int, error: str or nil}")
        return cls(request_id, error)
