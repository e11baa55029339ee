// The console's behaviour: forms sent without a body (flagsvc's front reads no body from a request without a
// bearer token, so the fields travel URL-encoded in the X-Console-Form header), live pages fed by /ui/events,
// and the flag page's charts. Data is only ever written with textContent: never innerHTML.

import { drawChart, drawSpark } from "./charts.js";

const body = document.body;

function showProblem(text) {
  const p = document.getElementById("problem");
  if (!p) return;
  p.textContent = text;
  p.hidden = !text;
}

function fill(node, text) {
  if (node) node.textContent = text;
}

function pct(v) {
  return typeof v === "number" ? `${Math.round(v * 100) / 100} %` : "–";
}

function when(t) {
  return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–";
}

// --- forms ---------------------------------------------------------------------------------------------------

// A form carries the revision the operator saw (If-Match). A form being filled in keeps the revision it was started
// on, whatever the live page shows meanwhile: its change was prepared on that state, so it must be refused (412)
// if the flag moved on, not applied over a change the operator never saw. Only an untouched form follows the flag,
// its revision and its settings' values alike.

function settingInputs(form) {
  return [...form.querySelectorAll("input[data-setting]")];
}

function edited(form) {
  return [...form.querySelectorAll("input:not([type=hidden])")].some((input) =>
    input.type === "checkbox" ? input.checked !== input.defaultChecked : input.value !== input.defaultValue);
}

function shown(value) {
  return value === null || value === undefined ? "" : String(value);
}

// The form as `flag` is: its revision, its settings' values and defaults; `keep` keeps what the operator typed.
function rebase(form, flag, keep) {
  const revision = form.querySelector("input[data-revision]");
  if (revision) revision.value = String(flag.revision);
  for (const input of settingInputs(form)) {
    const typed = input.value !== input.defaultValue ? input.value : null;
    input.defaultValue = shown((flag.analysis || {})[input.dataset.setting]);
    input.value = keep && typed !== null ? typed : input.defaultValue;
  }
  if (keep) for (const box of form.querySelectorAll('input[type="checkbox"]')) box.checked = false;
}

// Untouched forms follow `flag` (never backwards: a refresh can answer with an older flag than a save did); the
// notice says when a form being filled in holds an older revision than the flag's.
function followForms(flag) {
  let held = null;
  for (const form of document.querySelectorAll("form[data-console-form]")) {
    const revision = form.querySelector("input[data-revision]");
    if (!revision || Number(revision.value) >= flag.revision) continue;
    if (edited(form)) held = held === null ? revision.value : held;
    else rebase(form, flag, false);
  }
  const notice = document.getElementById("stale");
  if (!notice) return;
  fill(document.getElementById("stale-revision"), String(flag.revision));
  fill(document.getElementById("stale-held"), held === null ? "" : held);
  notice.hidden = held === null;
}

async function send(form) {
  const data = new FormData(form);
  const headers = { Accept: "application/json" };
  if (form.hasAttribute("data-sign-in")) {
    headers.Authorization = `Bearer ${String(data.get("token") || "").trim()}`;
    headers["X-Console-Form"] = "";
  } else {
    // settings are sent only when changed: an untouched one must not put back the value the page was drawn with
    const untouched = new Set(settingInputs(form).filter((i) => i.value === i.defaultValue).map((i) => i.name));
    if (untouched.size && untouched.size === settingInputs(form).length) {
      showProblem("Not sent: no setting was changed.");
      return;
    }
    const fields = new URLSearchParams();
    for (const [name, value] of data.entries()) if (!untouched.has(name)) fields.append(name, String(value));
    headers["X-Console-Form"] = fields.toString();
    headers["X-CSRF-Token"] = String(data.get("csrf") || "");
  }
  let answer;
  try {
    answer = await fetch(form.action, { method: "POST", headers, credentials: "same-origin", redirect: "manual" });
  } catch (e) {
    showProblem(`the server did not answer: ${e}`);
    return;
  }
  let doc = null;
  try {
    doc = await answer.json();
  } catch (e) {
    doc = null;
  }
  if (!answer.ok) {
    const message = doc && doc.error ? doc.error.message : `HTTP ${answer.status}`;
    if (answer.status === 412 && body.dataset.page === "flag") {
      const sent = data.get("revision");
      const page = await refreshFlag();
      if (page) {
        rebase(form, page.flag, true);
        followForms(page.flag);
      }
      showProblem(`Not applied: the flag changed while this form was being filled in (it was at revision ${sent}` +
        `${page ? `, it is now at ${page.flag.revision}` : ""}). Nothing was changed. The form now shows the ` +
        "flag as it is, with your entries kept: check them against the page, tick the box and send again.");
      return;
    }
    showProblem(`Not applied: ${message}`);
    if (body.dataset.page === "flag") refreshFlag();
    return;
  }
  showProblem("");
  if (doc && doc.next) {
    window.location.assign(doc.next);
    return;
  }
  if (doc && doc.flag) {
    for (const other of document.querySelectorAll("form[data-console-form]")) {
      if (other === form || !edited(other)) rebase(other, doc.flag, false);
    }
  }
  form.reset();
  if (doc && doc.flag) followForms(doc.flag);
  if (body.dataset.page === "flag") await refreshFlag();
}

for (const form of document.querySelectorAll("form[data-console-form]")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(form);
  });
}

// --- flags list ----------------------------------------------------------------------------------------------

function setState(node, state) {
  if (!node) return;
  node.textContent = state;
  node.setAttribute("class", `state state-${state}`);
}

function verdictText(row) {
  if (row.verdict) return `${row.verdict.decision}: ${row.verdict.reason}`;
  return row.judged ? "–" : `not judged while ${row.state}`;
}

function lastText(last) {
  if (!last) return "–";
  return `${last.action} by ${last.actor}${last.reason ? `: ${last.reason}` : ""}`;
}

function updateRow(row) {
  const tr = [...document.querySelectorAll("#flags tr[data-key]")].find((r) => r.dataset.key === row.key);
  if (!tr) return;
  setState(tr.querySelector('[data-field="state"]'), row.state);
  fill(tr.querySelector('[data-field="percent"]'), pct(row.percent));
  fill(tr.querySelector('[data-field="stage"]'), row.stage);
  fill(tr.querySelector('[data-field="verdict"]'), verdictText(row));
  fill(tr.querySelector('[data-field="last"]'), lastText(row.last));
  const spark = tr.querySelector("svg.spark");
  if (spark) drawSpark(spark, row.spark);
}

function drawSparks() {
  for (const svg of document.querySelectorAll("svg.spark")) {
    try {
      drawSpark(svg, JSON.parse(svg.dataset.points || "[]"));
    } catch (e) {
      /* a bad attribute draws nothing */
    }
  }
}

// --- flag page -----------------------------------------------------------------------------------------------

// A revision's aggregates start afresh, so each revision is a line of its own (null separates them).
function points(timeline, pick) {
  return timeline.revisions.flatMap((r) => [null, ...r.points.map((p) => [p.at, pick(p)])]).slice(1);
}

function drawFlag(page) {
  const { flag, row, log, timeline } = page;
  setState(document.getElementById("flag-state"), flag.state);
  fill(document.getElementById("flag-percent"), pct(flag.percent));
  fill(document.getElementById("flag-stage"), row.stage);
  fill(document.getElementById("flag-revision"), String(flag.revision));
  fill(document.getElementById("flag-description"), flag.description);
  fill(document.getElementById("flag-verdict"), verdictText(row));
  followForms(flag);
  const now = Date.now() / 1000;
  const decisions = [...log].reverse().filter((e) => typeof e.to_percent === "number");
  const percent = decisions.map((e) => [e.at, e.to_percent]);
  percent.push([Math.max(now, ...percent.map((p) => p[0])), flag.percent]);
  drawChart(document.getElementById("chart-rollout"), {
    series: [{ name: "percent", cls: "s-percent", points: percent, step: true }],
    markers: decisions.map((e) => ({
      t: e.at, v: e.to_percent, cls: `m-${e.action}`,
      title: `${when(e.at)} ${e.actor}: ${e.action} → ${e.to_percent} %${e.reason ? ` — ${e.reason}` : ""}`,
    })),
    yMin: 0, yMax: 100, unit: "%",
  });
  drawChart(document.getElementById("chart-errors"), {
    series: [
      { name: "canary", cls: "s-canary", points: points(timeline, (p) => p.canary.error_rate * 100) },
      { name: "stable", cls: "s-stable", points: points(timeline, (p) => p.stable.error_rate * 100) },
    ],
    unit: "%",
  });
  drawChart(document.getElementById("chart-latency"), {
    series: [
      { name: "canary", cls: "s-canary", points: points(timeline, (p) => p.canary.p95_ms) },
      { name: "stable", cls: "s-stable", points: points(timeline, (p) => p.stable.p95_ms) },
    ],
  });
  drawChart(document.getElementById("chart-judge"), {
    series: [
      { name: "errors", cls: "s-canary", points: points(timeline, (p) => p.errors.statistic) },
      { name: "latency", cls: "s-latency", points: points(timeline, (p) => p.latency.statistic) },
      { name: "accept at", cls: "s-accept", dashed: true, points: points(timeline, (p) => p.errors.accept_at) },
      { name: "roll back at", cls: "s-reject", dashed: true, points: points(timeline, (p) => p.errors.reject_at) },
    ],
  });
  drawLog(log);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function drawLog(log) {
  const tbody = document.querySelector("#decision-log tbody");
  if (!tbody) return;
  const rows = log.map((e) => {
    const tr = document.createElement("tr");
    cell(tr, when(e.at), "when");
    cell(tr, e.actor, "actor");
    cell(tr, `${e.action}${e.to_state ? ` → ${e.to_state}` : ""}`, "what");
    cell(tr, typeof e.to_percent === "number" ? `${e.from_percent || 0} → ${e.to_percent} %` : "", "num");
    cell(tr, e.reason, "reason");
    const evidence = cell(tr, "", "evidence");
    if (e.evidence.length) {
      const ul = document.createElement("ul");
      for (const line of e.evidence) {
        const li = document.createElement("li");
        li.textContent = line.text;
        ul.appendChild(li);
      }
      evidence.appendChild(ul);
    }
    return tr;
  });
  tbody.replaceChildren(...rows);
}

let refreshing = null;

// The flag page's data, drawn; resolves to it (null when it could not be read).
async function refreshFlag() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const answer = await fetch(body.dataset.data, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (answer.status === 404) {
        showProblem("This flag was deleted.");
        return null;
      }
      if (!answer.ok) return null;
      const page = await answer.json();
      drawFlag(page);
      return page;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// --- live ----------------------------------------------------------------------------------------------------

function live() {
  const flag = body.dataset.flag;
  const url = body.dataset.events + (flag ? `?flag=${encodeURIComponent(flag)}` : "");
  const source = new EventSource(url);
  const dot = document.getElementById("live");
  source.addEventListener("open", () => dot && dot.classList.add("on"));
  // each answer ends by design and EventSource comes back after `retry`: only a closed source is off
  source.addEventListener("error", () => {
    if (dot && source.readyState === EventSource.CLOSED) dot.classList.remove("on");
  });
  source.addEventListener("flags", (event) => {
    const doc = JSON.parse(event.data);
    for (const row of doc.rows) updateRow(row);
    const asked = new URLSearchParams(window.location.search);
    const notice = document.getElementById("flags-changed");
    if (notice && !asked.get("q") && !asked.get("state")) {
      const shown = new Set([...document.querySelectorAll("#flags tr[data-key]")].map((r) => r.dataset.key));
      const keys = new Set(doc.rows.map((r) => r.key));
      notice.hidden = keys.size === shown.size && [...keys].every((k) => shown.has(k));
    }
    body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
  });
  source.addEventListener("flag", () => {
    refreshFlag();
    body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
  });
}

// A Secure cookie set over http:// is dropped except on localhost: say so before the sign-in silently fails.
const insecure = document.getElementById("insecure-context");
if (insecure && !window.isSecureContext && insecure.dataset.secureCookie === "1") insecure.hidden = false;

if (body.dataset.page === "flags") {
  drawSparks();
  live();
} else if (body.dataset.page === "flag") {
  refreshFlag();
  live();
}
