"""Where the CPU of a warm `hello` call goes, by function (cProfile):

- server: `faas serve` under cProfile, switched on only while wrk loads
  /function/hello at 32 connections (SIGUSR1 starts it, SIGUSR2 writes the
  stats), so startup and deploy are not in the figures;
- sandbox: the in-sandbox runtime's per-call path (decode the call frame,
  build the event and context, run `hello`, capture output, encode the
  result) in this process, on the frames the server sends, without the
  socket.

    python -m bench.profile [--seconds S] [--top N] [--calls N]

Prints the top functions by own time, and each side's CPU per call
(profiling inflates it: compare the shares, not the absolute figures).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import signal
import tempfile
import time

from .common import HELLO, FaasServer
from .load import run_load

PROFILED_ENTRY = (
    "-c",
    "import cProfile, signal, sys\n"
    "from gateway.cli import main\n"
    "profiler = cProfile.Profile()\n"
    "out = sys.argv.pop(1)\n"
    "signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())\n"
    "def dump(*_):\n"
    "    profiler.disable()\n"
    "    profiler.dump_stats(out)\n"
    "signal.signal(signal.SIGUSR2, dump)\n"
    "sys.exit(main(sys.argv[1:]))\n",
)


def _top(stats: pstats.Stats, calls: int, top: int) -> str:
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    total = stats.total_tt  # type: ignore[attr-defined]
    return f"{total / calls * 1e6:.1f} µs of profiled CPU per call over {calls} calls\n" + buffer.getvalue()


def server_profile(seconds: float, top: int, save: str | None = None) -> str:
    out = save or tempfile.mktemp(suffix=".prof", prefix="faas-server-")
    entry = (PROFILED_ENTRY[0], PROFILED_ENTRY[1], out)
    server = FaasServer(entry=entry)
    try:
        server.deploy("hello", HELLO)
        url = f"http://127.0.0.1:{server.port}/function/hello"
        run_load(url, 32, 1)
        os.kill(server.proc.pid, signal.SIGUSR1)
        load = run_load(url, 32, seconds)
        os.kill(server.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the dump may still be being written
        calls = round(load["rps"] * seconds)
        return _top(pstats.Stats(out), calls, top)
    finally:
        server.stop()
        if not save and os.path.exists(out):
            os.unlink(out)


def sandbox_profile(calls: int, top: int) -> str:
    from sandbox import protocol
    from sandbox.runtime import Runtime
    from sandbox.spec import FunctionSpec

    with tempfile.TemporaryDirectory() as code:
        with open(os.path.join(code, "handler.py"), "w") as f:
            f.write(HELLO)
        spec = FunctionSpec("hello", 1, code, "handler", "handle")
        runtime = Runtime(spec, None)  # type: ignore[arg-type]
        import importlib.util

        module_spec = importlib.util.spec_from_file_location("handler", os.path.join(code, "handler.py"))
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        runtime.handler = module.handle
    call = protocol.Call(
        "0b0e5c8e-6f0e-4a53-9d0b-7f1c6c9d2f10",
        "GET",
        "/",
        {},
        (("Host", "127.0.0.1:8080"), ("User-Agent", "wrk"), ("X-Call-Id", "x")),
        b"",
        time.monotonic() + 30,
    )
    payload = protocol.pack(call)[protocol.HEADER.size :]

    def one() -> bytes:
        msg = protocol.parse_from_invoker(protocol.decode_payload(payload))
        assert isinstance(msg, protocol.Call)
        return protocol.pack(runtime.call(msg))

    for _ in range(1000):
        one()
    t0 = time.process_time()
    for _ in range(calls):
        one()
    plain_us = (time.process_time() - t0) / calls * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        one()
    profiler.disable()
    return f"{plain_us:.1f} µs of CPU per call unprofiled\n" + _top(pstats.Stats(profiler), calls, top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", choices=("server", "sandbox"))
    parser.add_argument("--save", help="keep the server's cProfile stats in this file")
    args = parser.parse_args()
    if args.only != "sandbox":
        print("== server ==\n" + server_profile(args.seconds, args.top, args.save))
    if args.only != "server":
        print("== sandbox runtime ==\n" + sandbox_profile(args.calls, args.top))


if __name__ == "__main__":
    main()
