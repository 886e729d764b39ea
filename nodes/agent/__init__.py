"""The node agent: the Infernet-compatible server that miners run on their GPU machines.

It never imports the marketplace's models or settings: it is a standalone asyncio
program (aiohttp) that the marketplace reaches over HTTP only.
"""
AGENT_VERSION = "1.4.0"
