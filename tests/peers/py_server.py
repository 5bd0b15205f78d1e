#!/usr/bin/env python3
"""MCP server built on the official Python SDK (PyPI `mcp` 2.3.x, MCPServer,
formerly FastMCP), for Castellan's content-inspection interop test.

    py_server.py PORT

Serves Streamable HTTP on http://127.0.0.1:PORT/mcp. Tool `deploy` logs a
message through `ctx.info`, reports progress with a message, then returns a
text result; all three carry the same example cloud access key
(AKIAIOSFODNN7EXAMPLE, from the AWS documentation), so a gateway that
inspects streamed events must mask it in every one.
Run it with tests/peers/.venv/bin/python (see setup.sh).
"""
import sys
import warnings

from mcp.server.mcpserver import Context, MCPServer

KEY = "AKIAIOSFODNN7EXAMPLE"

# ctx.info is deprecated for 2026-07-28 clients; this server speaks to a
# 2025-era session, where log messages ride the request's stream.
warnings.simplefilter("ignore")

server = MCPServer("castellan-py-server", version="1.0.0")


@server.tool()
async def deploy(ctx: Context) -> str:
    """Deploys the service and reports how it goes."""
    await ctx.info(f"loaded key {KEY} from the vault")
    await ctx.report_progress(1, 2, f"using {KEY}")
    await ctx.info({"step": "upload", "files": 3})
    return f"deployed with {KEY}"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
