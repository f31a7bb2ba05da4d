// The dashboard page: polls the JSON APIs and draws them. No framework.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(n, digits) {
  return n === null || n === undefined ? "–" : Number(n).toFixed(digits);
}
function pct(s) { return s === null || s === undefined ? "–" : (s * 100).toFixed(1) + " %"; }
function health(s, rps) {
  if (s === null || s === undefined || !rps) return "idle";
  return s >= 0.99 ? "ok" : s >= 0.95 ? "warn" : "bad";
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function drawGraph(g) {
  const nodes = document.getElementById("nodes"), edges = document.getElementById("edges");
  nodes.replaceChildren(); edges.replaceChildren();
  document.getElementById("window").textContent = g.windowSeconds ? "(last " + Math.round(g.windowSeconds) + " s)" : "";
  const W = 800, H = 500, R = Math.min(W, H) / 2 - 70, pos = {};
  g.nodes.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(g.nodes.length, 1) - Math.PI / 2;
    pos[n.id] = { x: W / 2 + R * Math.cos(a), y: H / 2 + R * Math.sin(a) };
  });
  for (const e of g.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    // Stop short of the circles so the arrowhead shows.
    const dx = b.x - a.x, dy = b.y - a.y, d = Math.hypot(dx, dy) || 1, r = 34;
    const x1 = a.x + dx * r / d, y1 = a.y + dy * r / d, x2 = b.x - dx * r / d, y2 = b.y - dy * r / d;
    const grp = el("svg:g", {
      class: "edge " + health(e.success, e.rps), "data-source": e.source, "data-target": e.target,
      "data-protocol": e.protocol, "data-rps": fmt(e.rps, 2), "data-success": e.success === null ? "" : fmt(e.success, 4),
      "data-mtls": e.mtls ? "true" : "false", "data-requests": String(Math.round(e.requests)),
    });
    grp.append(el("svg:line", { x1, y1, x2, y2 }));
    const lx = (x1 + x2) / 2 + 4, ly = (y1 + y2) / 2 - 4;
    grp.append(el("svg:text", { x: lx, y: ly }, fmt(e.rps, 2) + " rps " + pct(e.success)));
    // Drawn, not an emoji: it must show without emoji fonts, offline.
    if (e.mtls) grp.append(lock(lx - 16, ly - 10));
    grp.append(el("svg:title", {}, e.source + " → " + e.target + " (" + e.protocol + ")" + (e.mtls ? ", mutual TLS" : "")));
    edges.append(grp);
  }
  for (const n of g.nodes) {
    const p = pos[n.id], s = n.inbound || {};
    const grp = el("svg:g", {
      class: "node", "data-workload": n.id, "data-pods": n.pods, "data-requests": String(Math.round(s.requests || 0)),
      "data-rps": fmt(s.rps, 2), "data-success": s.success === null || s.success === undefined ? "" : fmt(s.success, 4),
      "data-p50": s.p50ms == null ? "" : fmt(s.p50ms, 2), "data-p99": s.p99ms == null ? "" : fmt(s.p99ms, 2),
      transform: "translate(" + p.x + "," + p.y + ")",
    });
    grp.append(el("svg:circle", { r: 30 }));
    grp.append(el("svg:text", { y: 4 }, n.workload));
    if (s.rps) grp.append(el("svg:text", { y: 46, class: "figures" }, fmt(s.rps, 2) + " rps · " + pct(s.success)));
    nodes.append(grp);
  }
}

function lock(x, y) {
  const g = el("svg:g", { class: "lock", transform: "translate(" + x + "," + y + ")" });
  g.append(el("svg:path", { d: "M3,5 V3 a3,3 0 0 1 6,0 V5", fill: "none" }));
  g.append(el("svg:rect", { x: 1, y: 5, width: 10, height: 7, rx: 1 }));
  g.append(el("svg:title", {}, "mutual TLS"));
  return g;
}

// fill replaces a table's rows; rowAttrs, when given, maps a row's index
// to its <tr>'s attributes (data- keys tests and scripts can read).
function fill(id, rows, rowAttrs) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map((cells, i) => {
    const tr = el("tr", rowAttrs ? rowAttrs(i) : {});
    for (const c of cells) {
      const td = typeof c === "object" ? el("td", c.attrs, c.text) : el("td", {}, c);
      tr.append(td);
    }
    return tr;
  }));
}

function num(v) { return { text: v, attrs: { class: "num" } }; }

async function refresh() {
  try {
    const [g, sv, px, po, rq] = await Promise.all(["graph", "services", "proxies", "policies", "requests"].map(p => getJSON("api/" + p)));
    drawGraph(g);
    fill("services", sv.services.map(s => [s.namespace + "/" + s.name, s.workloads.join(", "), num(fmt(s.rps, 2)), num(pct(s.success)),
      num(s.p50ms == null ? "–" : fmt(s.p50ms, 1) + " ms"), num(s.p99ms == null ? "–" : fmt(s.p99ms, 1) + " ms")]));
    fill("proxies", px.proxies.map(p => [p.namespace + "/" + p.pod, p.ready ? "ready" : (p.readyText || p.error || "not ready"),
      p.connected ? (p.synced ? "synced" : "syncing") : "disconnected",
      Object.keys(p.versions).sort().map(k => k + "=" + p.versions[k]).join(" "), num(String(p.nacks) + (p.lastNACK ? " (" + p.lastNACK + ")" : ""))]));
    fill("policies", po.workloads.map(w => [w.namespace + "/" + w.workload, w.policies.length ? w.policies.join("\n") : "none"]));
    const recent = rq.requests.slice(0, 50);
    fill("requests", recent.map(r => [r.start_time, r.namespace + "/" + r.pod, r.direction,
      r.method + " " + r.authority + r.path, num(String(r.response_code)), r.response_flags, num(String(r.duration)), r.upstream_cluster]),
    i => {
      const r = recent[i];
      return { class: "request", "data-workload": r.namespace + "/" + (r.workload || r.pod), "data-pod": r.pod, "data-direction": r.direction,
        "data-method": r.method, "data-path": r.path, "data-code": String(r.response_code), "data-flags": r.response_flags,
        "data-upstream": r.upstream_cluster, "data-peer": r.downstream_peer_principal || "" };
    });
    document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (err) {
    document.getElementById("status").textContent = "cannot reach the mesh: " + err.message;
  }
}

refresh();
setInterval(refresh, 2000);
