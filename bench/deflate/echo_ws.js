// Echo server on Node `ws` with permessage-deflate on (`perMessageDeflate:
// true`: ws' defaults, i.e. 15-bit windows, context kept, and messages under
// 1024 bytes sent uncompressed), a non-Rust reference for the compression
// benchmark (bench/compression.sh). Run with NODE_PATH=<test-env>/node/node_modules.
//
//   node bench/deflate/echo_ws.js [HOST:PORT]   (default 127.0.0.1:9001)
'use strict';
const { WebSocketServer } = require('ws');

const addr = process.argv[2] || '127.0.0.1:9001';
const at = addr.lastIndexOf(':');
const host = addr.slice(0, at).replace(/^\[|\]$/g, '');
const port = Number(addr.slice(at + 1));

const wss = new WebSocketServer({ host, port, perMessageDeflate: true });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`echo_ws: listening on ${addr}`));
