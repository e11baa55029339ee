// Small time-series charts drawn as inline SVG: lines, step lines, dashed threshold lines and markers.
// Every text goes in with textContent (a <title> for a marker's tooltip), never as markup; colours come from
// classes in console.css, so no style attribute is needed under the console's Content-Security-Policy.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}

function fmt(v) {
  if (!finite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 100000)) return v.toExponential(1);
  return String(Math.round(v * 100) / 100);
}

function clock(t) {
  return new Date(t * 1000).toISOString().slice(11, 19);
}

// series: [{name, cls, points: [[t, v], ...], step?, dashed?}] (a null point breaks the line);
// markers: [{t, v, cls, title}]
export function drawChart(svg, { series, markers = [], yMin, yMax, unit = "" }) {
  clear(svg);
  const [W, H] = [640, 180];
  const pad = { l: 48, r: 10, t: 10, b: 22 };
  const ok = (p) => p !== null && finite(p[0]) && finite(p[1]);
  const all = series.flatMap((s) => s.points.filter(ok));
  const ts = all.map((p) => p[0]).concat(markers.map((m) => m.t).filter(finite));
  if (ts.length === 0) {
    const empty = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg);
    empty.textContent = "no data yet";
    svg.dataset.drawn = "0";
    return;
  }
  const vs = all.map((p) => p[1]).concat(markers.map((m) => m.v).filter(finite));
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  if (t1 - t0 < 1) t1 = t0 + 1;
  let v0 = yMin ?? Math.min(0, ...vs), v1 = yMax ?? Math.max(...vs, v0 + 1e-9);
  if (v1 - v0 <= 0) v1 = v0 + 1;
  if (yMax === undefined) v1 += (v1 - v0) * 0.08;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - ((v - v0) / (v1 - v0)) * (H - pad.t - pad.b);

  el("line", { x1: pad.l, y1: y(v0), x2: W - pad.r, y2: y(v0), class: "axis" }, svg);
  el("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis" }, svg);
  for (const v of [v0, (v0 + v1) / 2, v1]) {
    const label = el("text", { x: pad.l - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, svg);
    label.textContent = fmt(v) + unit;
  }
  for (const t of [t0, t1]) {
    const label = el("text", { x: x(t), y: H - 6, "text-anchor": t === t0 ? "start" : "end", class: "tick" }, svg);
    label.textContent = clock(t);
  }
  let drawn = 0;
  series.forEach((s, i) => {
    const segments = [[]];
    for (const p of s.points) {
      if (p === null) segments.push([]);
      else if (ok(p)) segments[segments.length - 1].push(p);
    }
    const pts = segments.flat();
    if (pts.length === 0) return;
    for (const segment of segments.filter((g) => g.length > 0)) {
      const coords = [];
      segment.forEach((p, j) => {
        if (s.step && j > 0) coords.push(`${x(p[0])},${y(segment[j - 1][1])}`);
        coords.push(`${x(p[0])},${y(p[1])}`);
      });
      if (coords.length === 1) coords.push(coords[0]);
      el("polyline", { points: coords.join(" "), class: `line ${s.cls}${s.dashed ? " dashed" : ""}` }, svg);
    }
    const legend = el("text", { x: pad.l + 6 + i * 120, y: pad.t + 10, class: `legend ${s.cls}` }, svg);
    legend.textContent = s.name;
    drawn += pts.length;
  });
  for (const m of markers) {
    if (!finite(m.t) || !finite(m.v)) continue;
    const dot = el("circle", { cx: x(m.t), cy: y(m.v), r: 4.5, class: `marker ${m.cls || ""}` }, svg);
    const title = el("title", {}, dot);
    title.textContent = m.title;
    drawn += 1;
  }
  svg.dataset.drawn = String(drawn);
}

export function drawSpark(svg, points) {
  clear(svg);
  const pts = (points || []).filter((p) => finite(p[0]) && finite(p[1]));
  if (pts.length === 0) return;
  const [W, H] = [120, 28];
  let t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
  if (t1 - t0 < 1) t1 = t0 + 1;
  const x = (t) => 2 + ((t - t0) / (t1 - t0)) * (W - 4);
  const y = (v) => H - 2 - (v / 100) * (H - 4);
  const coords = [];
  pts.forEach((p, j) => {
    if (j > 0) coords.push(`${x(p[0])},${y(pts[j - 1][1])}`);
    coords.push(`${x(p[0])},${y(p[1])}`);
  });
  if (coords.length === 1) coords.push(`${W - 2},${y(pts[0][1])}`);
  el("polyline", { points: coords.join(" "), class: "line spark-line" }, svg);
  svg.dataset.drawn = String(pts.length);
}
