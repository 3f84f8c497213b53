"""The HTTP API for departments and operators (aiohttp), described by its own OpenAPI document."""
