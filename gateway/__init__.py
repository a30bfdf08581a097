"""The HTTP side: the aiohttp app (create_app), its routes, and the CLI."""
