'use strict';
// jwks_server.js: a tiny JWKS issuer for the jwt auth method tests (SPEC §5). Serves the
// content of JWKS_FILE, re-read on every request so that a test rotates keys by rewriting the
// file, on a free loopback port, and logs every request.
//
//   node jwks_server.js JWKS_FILE PORT_FILE LOG_FILE
//
// Listens on 127.0.0.1 (port chosen by the kernel), then writes the port to PORT_FILE (atomically,
// so a reader never sees half of it). Each request appends "<unix ms> <method> <url> <status>"
// to LOG_FILE. A missing JWKS_FILE is a 404. Stops on SIGTERM or SIGINT.

const fs = require('fs');
const http = require('http');

const [jwksFile, portFile, logFile] = process.argv.slice(2);
if (!jwksFile || !portFile || !logFile) {
    console.error('usage: node jwks_server.js JWKS_FILE PORT_FILE LOG_FILE');
    process.exit(2);
}

const server = http.createServer((req, res) => {
    let status = 200;
    let body;
    try {
        body = fs.readFileSync(jwksFile);
    } catch (e) {
        status = 404;
        body = Buffer.from('{"error":"no JWKS"}');
    }
    fs.appendFileSync(logFile, `${Date.now()} ${req.method} ${req.url} ${status}\n`);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
});

server.listen(0, '127.0.0.1', () => {
    const tmp = `${portFile}.tmp`;
    fs.writeFileSync(tmp, `${server.address().port}\n`);
    fs.renameSync(tmp, portFile);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
        server.close(() => process.exit(0));
        // A kept-alive connection would hold close() open: do not wait for it.
        setTimeout(() => process.exit(0), 500).unref();
    });
}
