// Stream rows into a Plotline plot from Node.js: fetch and WebSocket, no packages.
//
//   node examples/stream.mjs                         (Node 22 or later)
//   node --experimental-websocket examples/stream.mjs (Node 20 and 21)
//
// Environment: PLOTLINE (the server, default http://127.0.0.1:5006), PLOTLINE_API_KEY (an
// API key: needed on a multi-user server), ROWS (how many to stream, default 100).
// It makes a data source and a public plot of it (examples/line.json, its line bound to
// the source by the tag plotline:source=<id>), prints the plot's URL, then appends the rows
// one at a time over REST while a websocket watches the source: every append comes back as
// an `appended` event, in order; it prints how many arrived and exits.
import { readFileSync } from "node:fs";

if (typeof WebSocket === "undefined") {
  console.error("this Node has no WebSocket: use Node 22+, or run with --experimental-websocket");
  process.exit(2);
}
const base = (process.env.PLOTLINE || "http://127.0.0.1:5006").replace(/\/$/, "");
const key = process.env.PLOTLINE_API_KEY;
const rows = Number(process.env.ROWS || 100);
const headers = { "Content-Type": "application/json" };
if (key) headers.Authorization = `Bearer ${key}`;

async function api(method, path, body) {
  const response = await fetch(base + "/api/v1" + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${answer.error}: ${answer.detail}`);
  }
  return answer;
}

const source = await api("POST", "/data/sources",
  // (JSON has one kind of number: say which columns are floats)
  { name: "from node", columns: { t: [0], c: [20] }, dtypes: { c: "float64" }, rollover: 1000 });
const doc = JSON.parse(readFileSync(new URL("./line.json", import.meta.url), "utf8")
  .replace("plotline:source=SOURCE", `plotline:source=${source.id}`));
const made = await api("POST", "/docs/", { title: `Node stream ${Date.now()}`, doc });
await api("POST", `/docs/${made.id}/publish`);
console.log(`${base}/plots/${made.id}`);

// a browser's WebSocket cannot send headers: the key rides in ?token=
const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws" +
                         (key ? `?token=${encodeURIComponent(key)}` : ""));
let seen = 0, last = null;
const done = new Promise((resolve, reject) => {
  ws.onerror = () => reject(new Error("the websocket failed"));
  ws.onmessage = async (message) => {
    const msg = JSON.parse(message.data);
    if (msg.op === "subscribed") {
      for (let i = 1; i <= rows; i++) {  // one row at a time, as a sensor would send them
        await api("POST", `/data/sources/${source.id}/append`,
          { columns: { t: [i], c: [20 + Math.sin(i / 5)] } });
      }
    } else if (msg.op === "event" && msg.type === "appended") {
      if (last !== null && msg.seq !== last + 1) reject(new Error(`a gap: ${last} -> ${msg.seq}`));
      last = msg.seq;
      if (++seen === rows) resolve();
    } else if (msg.op === "error") {
      reject(new Error(`${msg.code}: ${msg.detail}`));
    }
  };
  ws.onopen = () => ws.send(JSON.stringify({ op: "subscribe", channel: `data:${source.id}` }));
});
await done;
ws.close();
console.log(`streamed ${rows} rows; ${seen} appended events arrived, in order`);
