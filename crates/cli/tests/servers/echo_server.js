// Node `ws` echo server for the CLI's race tests (replies_lost.rs).
//
// Listens on 127.0.0.1 on an ephemeral port, prints the port on stdout and
// echoes every message back as it came (text as text, binary as binary),
// with permessage-deflate on offer. Exits when its standard input closes,
// so it never outlives the test. Run with NODE_PATH at the node_modules
// that hold `ws`.

const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
wss.on("listening", () => console.log(wss.address().port));
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
