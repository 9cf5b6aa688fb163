"use strict";
// The status page: polls /api/status every 2 s and renders it (no framework, no build).
const POLL_MS = 2000;
const HISTORY = 90;
const samples = [];

function $(id) { return document.getElementById(id); }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (h || d ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function setText(id, text) { $(id).textContent = text; }

// "key value, key value" of a flat summary object (nested values as JSON, nulls left out)
function summary(obj) {
  return Object.entries(obj)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => k.replace(/_/g, " ") + " " +
         (typeof v === "object" ? JSON.stringify(v) : String(v)))
    .join(", ") || "—";
}

function fillList(id, items) {
  const ul = $(id);
  ul.replaceChildren(...items.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
}

function fillTable(id, head, rows) {
  const table = $(id);
  const tr = (cells, tag) => {
    const row = document.createElement("tr");
    for (const c of cells) {
      const cell = document.createElement(tag);
      cell.textContent = c;
      row.appendChild(cell);
    }
    return row;
  };
  table.replaceChildren(tr(head, "th"), ...rows.map((r) => tr(r, "td")));
}

function drawGraph() {
  const canvas = $("graph");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (samples.length < 2) return;
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000 || 1;
    rates.push({ in: Math.max(0, (samples[i].in - samples[i - 1].in) / dt),
                 out: Math.max(0, (samples[i].out - samples[i - 1].out) / dt) });
  }
  const top = Math.max(1, ...rates.map((r) => Math.max(r.in, r.out)));
  const line = (key, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    rates.forEach((r, i) => {
      const x = w - (rates.length - 1 - i) * (w / (HISTORY - 1));
      const y = h - 4 - (r[key] / top) * (h - 8);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  };
  line("in", "#2a7ab8");
  line("out", "#c0602a");
  const last = rates[rates.length - 1];
  setText("rate-in", bytes(last.in) + "/s");
  setText("rate-out", bytes(last.out) + "/s");
}

function render(s) {
  setText("peer-id", s.peer_id);
  setText("version", s.version + " (" + s.agent + ")");
  setText("uptime", duration(s.uptime));
  const r = s.reachability || {};
  setText("reachability", (r.Reachability || "unknown") +
          (r.External && r.External.length ? " — " + r.External.join(", ") : ""));
  setText("dht", s.dht ? (s.dht.server ? "server" : "client") + ", " + s.dht.routing_table +
          " peers in the routing table" : "off");
  const res = r.Reservations || [];
  setText("relays", (res.length ? "reserved at " + res.join(", ") : "no reservation") +
          (r.Relay ? "; as a relay: " + summary(r.Relay) : ""));
  setText("portmap", r.PortMap ? summary(r.PortMap) : "off");
  setText("holepunch", r.HolePunch ? summary(r.HolePunch) : "off");
  fillList("addrs", s.addrs);
  setText("total-in", bytes(s.bandwidth.in));
  setText("total-out", bytes(s.bandwidth.out));
  const protos = Object.entries(s.bandwidth.by_protocol)
    .sort((a, b) => (b[1].in + b[1].out) - (a[1].in + a[1].out)).slice(0, 8);
  fillTable("protocols", ["protocol", "in", "out"],
            protos.map(([p, v]) => [p, bytes(v.in), bytes(v.out)]));
  samples.push({ t: Date.now(), in: s.bandwidth.in, out: s.bandwidth.out });
  while (samples.length > HISTORY) samples.shift();
  drawGraph();
  if (s.repo) {
    setText("repo-size", bytes(s.repo.disk_bytes));
    setText("repo-blocks", s.repo.blocks + " (" + bytes(s.repo.blocks_bytes) + ")");
    setText("repo-max", s.repo.storage_max ? bytes(s.repo.storage_max) : "no limit");
    setText("pin-count", String(s.repo.pin_count));
    setText("bitswap", s.bitswap ? s.bitswap.blocks_received + " blocks in, " +
            s.bitswap.blocks_sent + " out" : "off");
    const ul = $("pins");
    ul.replaceChildren(...s.repo.pins.map((p) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "/ipfs/" + encodeURIComponent(p.cid) + "/";
      a.textContent = p.cid;
      li.append(a, p.name ? "  " + p.name : "");
      return li;
    }));
  } else {
    setText("repo-size", "no blockstore");
  }
  setText("peer-count", "(" + s.peer_count + ", " + s.connections + " connections)");
  fillTable("peers", ["peer", "address", "transport", "dir", "agent"],
            s.peers.map((p) => [p.id, p.addr, p.transport, p.direction, p.agent]));
}

async function poll() {
  try {
    const res = await fetch("/api/status", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    $("state").textContent = "live";
    $("state").className = "state";
  } catch (err) {
    $("state").textContent = "daemon unreachable (" + err.message + ")";
    $("state").className = "state down";
  }
  setTimeout(poll, POLL_MS);
}

poll();
