// Preload module that forces every TCP listener of the process onto 127.0.0.1.
//
//   node --import ./tests/peers/force-loopback.mjs <script> ...
//
// Some reference servers (e.g. @modelcontextprotocol/server-everything's
// streamableHttp transport: `app.listen(process.env.PORT || 3001)`) offer no
// way to choose the bind address and listen on all interfaces. Tests must not
// expose them beyond loopback, so this hook rewrites net.Server#listen calls:
// a port-only call, or one naming a wildcard / non-loopback host, is bound to
// 127.0.0.1 instead. Unix-socket paths and handles are left alone.
import net from 'node:net';

const LOOPBACK = '127.0.0.1';
const isLoopback = h => h === 'localhost' || h === '::1' || (typeof h === 'string' && h.startsWith('127.'));
const isPort = v => typeof v === 'number' || (typeof v === 'string' && v !== '' && /^\d+$/.test(v));

const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...args) {
    const first = args[0];
    if (isPort(first)) {
        // listen(port[, host][, backlog][, cb])
        const port = Number(first);
        if (typeof args[1] === 'string') {
            if (!isLoopback(args[1])) args[1] = LOOPBACK;
            args[0] = port;
        } else {
            args.splice(0, 1, port, LOOPBACK);
        }
    } else if (first === undefined || typeof first === 'function') {
        // listen() / listen(cb): ephemeral port on all interfaces -> loopback
        args.unshift(0, LOOPBACK);
    } else if (first && typeof first === 'object' && !(first instanceof net.Server) && first.path === undefined && first.fd === undefined && first.handle === undefined && !('_handle' in first)) {
        // listen(options[, cb])
        if (!isLoopback(first.host)) args[0] = { ...first, host: LOOPBACK };
    }
    return originalListen.apply(this, args);
};
