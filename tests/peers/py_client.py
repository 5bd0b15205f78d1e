#!/usr/bin/env python3
"""MCP client driven by the official Python SDK (PyPI `mcp` 2.3.x).

    py_client.py URL --mode legacy|2026-07-28|auto [--header 'Name: value']...
                 [--call TOOL [--args JSON]] [--timeout SECONDS]

Connects over Streamable HTTP with `mcp.Client(transport, mode=MODE)`, lists the
tools, optionally calls one, and prints ONE JSON object on stdout:

    {"tools": [names...], "call": <CallToolResult as JSON, or null>,
     "protocol": "<negotiated protocol version>", "server": {"name":..,"version":..} | null,
     "logs": [log message params received during the call, as JSON],
     "progress": [{"progress":.., "total":.., "message":..} received for the call]}

Modes: `legacy` forces the initialize handshake (2025-era, sessions);
`2026-07-28` adopts the stateless revision without a probe; `auto` probes
`server/discover` and falls back to `initialize`.

The client declares sampling, elicitation and roots and answers them with
canned values (sampling: a fixed assistant text; elicitation: accept, filling
every field from its default or a type-appropriate value; roots: one file
root), so tools that ask the client for input work on both eras (2025-era
server->client requests and 2026-07-28 input_required rounds).

Exit status: 0 on success (also when the called tool returned isError: see
"call.isError"), 1 on any failure (message on stderr), 2 on usage errors.
Run it with tests/peers/.venv/bin/python (see setup.sh).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

try:
    import anyio
    import mcp
    from mcp import types
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"py_client: cannot import the MCP Python SDK ({exc}); run tests/peers/setup.sh "
          "and use tests/peers/.venv/bin/python", file=sys.stderr)
    sys.exit(1)

CANNED_SAMPLING_TEXT = "canned sampling response from py_client"
CANNED_ROOT = "file:///tmp/castellan-py-client-root"


def parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--header must look like 'Name: value', got {raw!r}")
    return name.strip(), value.strip()


def fill_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Build elicitation content that satisfies a flat elicitation schema."""
    content: dict[str, Any] = {}
    for key, prop in ((schema or {}).get("properties") or {}).items():
        prop = prop or {}
        if "default" in prop:
            content[key] = prop["default"]
            continue
        kind = prop.get("type")
        if prop.get("enum"):
            content[key] = prop["enum"][0]
        elif prop.get("oneOf"):
            content[key] = prop["oneOf"][0].get("const")
        elif kind == "boolean":
            content[key] = True
        elif kind in ("integer", "number"):
            content[key] = prop.get("minimum", 1)
        elif kind == "array":
            items = prop.get("items") or {}
            if items.get("enum"):
                content[key] = [items["enum"][0]]
            elif items.get("anyOf"):
                content[key] = [items["anyOf"][0].get("const")]
            else:
                content[key] = []
        else:
            content[key] = "test"
    return content


async def on_sampling(_ctx: Any, _params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=CANNED_SAMPLING_TEXT),
        model="castellan-canned-model",
        stop_reason="endTurn",
    )


async def on_elicitation(_ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    schema = getattr(params, "requested_schema", None)
    if schema is not None and not isinstance(schema, dict):
        schema = schema.model_dump(by_alias=True, exclude_none=True)
    return types.ElicitResult(action="accept", content=fill_schema(schema))


async def on_list_roots(_ctx: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri=CANNED_ROOT, name="py_client root")])


def dump(model: Any) -> Any:
    if model is None:
        return None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    logs: list[Any] = []
    progress: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(dump(params))

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "total": total, "message": message})

    headers = dict(args.header or [])
    http_client = create_mcp_http_client(headers=headers or None)
    async with http_client:
        transport = streamable_http_client(args.url, http_client=http_client)
        client = mcp.Client(
            transport,
            mode=args.mode,
            read_timeout_seconds=args.timeout,
            sampling_callback=on_sampling,
            elicitation_callback=on_elicitation,
            list_roots_callback=on_list_roots,
            logging_callback=on_log,
            client_info=types.Implementation(name="castellan-py-client", version="1.0.0"),
            cache=None,
        )
        async with client:
            listed = await client.list_tools()
            names = [tool.name for tool in listed.tools]
            cursor = listed.next_cursor
            while cursor:
                page = await client.list_tools(cursor=cursor)
                names.extend(tool.name for tool in page.tools)
                cursor = page.next_cursor
            call = None
            if args.call:
                result = await client.call_tool(args.call, args.args, progress_callback=on_progress)
                call = dump(result)
            server = client.server_info
            return {
                "tools": names,
                "call": call,
                "protocol": client.protocol_version,
                "server": dump(server),
                "logs": logs,
                "progress": progress,
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--mode", required=True, choices=["legacy", "2026-07-28", "auto"])
    parser.add_argument("--header", action="append", type=parse_header, metavar="'Name: value'")
    parser.add_argument("--call", metavar="TOOL")
    parser.add_argument("--args", default="{}", metavar="JSON", help="tool arguments (JSON object)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request read timeout, seconds")
    args = parser.parse_args()
    try:
        args.args = json.loads(args.args)
        if not isinstance(args.args, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        parser.error(f"--args must be a JSON object: {exc}")

    try:
        out = anyio.run(_bounded, args)
    except BaseException as exc:  # noqa: BLE001 - report everything, including task-group errors
        print(f"py_client: {describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


async def _bounded(args: argparse.Namespace) -> dict[str, Any]:
    with anyio.fail_after(args.timeout * 4):
        return await run(args)


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
