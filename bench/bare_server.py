"""The baseline server: aiohttp on uvloop answering "Hello, world!"."""

import sys

import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world!")


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop=uvloop.new_event_loop(),
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
