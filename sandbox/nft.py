"""nftables commands, in process through libnftables where it is installed
(about 0.2 ms a command: cheap enough for a cold start), else through the
`nft` program (about 15 ms a command).

`Nft.find()` says which is there. Commands are nft's own text syntax; one
`run` is one transaction (all of it applies, or none).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import threading


class NftError(RuntimeError):
    """nft refused a command; the message is nft's own."""


class Nft:
    def run(self, commands: str) -> str:
        """Run `commands` as one transaction; nft's output. Raises NftError."""
        raise NotImplementedError

    @staticmethod
    def find() -> Nft | None:
        """libnftables if it loads, else the nft program, else None."""
        try:
            return LibNftables()
        except OSError:
            pass
        program = shutil.which("nft") or next(
            (p for p in ("/usr/sbin/nft", "/sbin/nft") if shutil.which(p)), None
        )
        return NftProgram(program) if program else None


class LibNftables(Nft):
    """libnftables through ctypes. A context is not thread-safe: one lock."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(name)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        # Output and errors into buffers, not onto the server's stdout.
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, commands: str) -> str:
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise NftError(_first_error(err) or f"nft failed ({rc})")
        return out

    def __del__(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx:
            self._lib.nft_ctx_free(ctx)


class NftProgram(Nft):
    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, commands: str) -> str:
        proc = subprocess.run([self.path, "-f", "-"], input=commands, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NftError(_first_error(proc.stderr) or f"nft exited with {proc.returncode}")
        return proc.stdout


def _first_error(text: str) -> str:
    """nft's first error line (it follows each with the offending command and a caret line)."""
    for line in text.splitlines():
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    return text.strip().splitlines()[0] if text.strip() else ""
