"""Entry points: the aiohttp app, the hold sweeper it runs, and the admin CLI."""
