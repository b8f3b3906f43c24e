// The taskflow operator console. Polls the run table, the counts and the health every 2 s;
// streams the open run's events over SSE (fetch + a streaming parser, so events of any name
// arrive) and resumes with Last-Event-ID after a drop.

const POLL_MS = 2000;
const STATES = ["created", "running", "suspended", "completed", "failed", "cancelled"];
// Which run states each action is valid in (the server answers 409 otherwise).
const VALID = {
  stop: ["created", "running"],
  resume: ["suspended"],
  cancel: ["created", "running", "suspended"],
  signal: ["created", "running", "suspended"],
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
};

let base = "";
const view = {
  filter: {}, // state, task, owner, key
  cursors: [], // the cursor of each page shown before this one
  cursor: null, // this page's cursor (null: newest)
  next: null,
  open: null, // the open run's key
  detail: null,
  stream: null, // AbortController of the open run's event stream
  events: [], // the open run's events: {id, event, data}
  pending: null, // the action waiting for confirmation
};
// What tests read.
window.__console = view;

async function api(path, options = {}) {
  const res = await fetch(`${base}/api${path}`, options);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: { message: text } }; }
  if (!res.ok) {
    const e = new Error(body?.error?.message || `HTTP ${res.status}`);
    e.status = res.status;
    e.code = body?.error?.code;
    throw e;
  }
  return body;
}

function query(extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...view.filter, ...extra })) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---- runs ----

async function loadRuns() {
  try {
    const page = await api(`/runs${query({ cursor: view.cursor, limit: 50 })}`);
    $("#list-error").textContent = "";
    view.next = page.next_cursor;
    const body = $("#runs tbody");
    body.replaceChildren(...page.runs.map(runRow));
    $("#older").disabled = !view.next;
    $("#newest").disabled = view.cursor === null;
    $("#page-info").textContent = `page ${view.cursors.length + 1} · ${page.runs.length} runs`;
  } catch (e) {
    $("#list-error").textContent = e.message;
  }
}

function runRow(r) {
  const tr = el("tr");
  tr.dataset.key = r.idempotency_key;
  tr.dataset.state = r.status;
  if (r.idempotency_key === view.open) tr.className = "open";
  const key = el("td"); key.append(el("code", r.idempotency_key.slice(0, 12) + "…"));
  const owner = el("td"); owner.append(el("code", r.owner ?? "(service)"));
  tr.append(key, el("td", r.task), owner, el("td", r.status, `state ${r.status}`),
    el("td", `${r.attempt}/${r.max_attempts}`), el("td", String(r.last_seq)), el("td", r.updated_at));
  tr.onclick = () => openRun(r.idempotency_key);
  return tr;
}

async function loadCounts() {
  try {
    const counts = await api("/counts");
    const box = $("#counts");
    box.replaceChildren(...STATES.map(s => {
      const b = el("button", `${s} ${counts[s] ?? 0}`);
      b.type = "button";
      b.dataset.state = s;
      b.dataset.count = String(counts[s] ?? 0);
      if (view.filter.state === s) b.className = "on";
      b.onclick = () => setFilter({ ...view.filter, state: view.filter.state === s ? "" : s });
      return b;
    }));
  } catch { /* the list shows the error */ }
}

function setFilter(filter) {
  view.filter = Object.fromEntries(Object.entries(filter).filter(([, v]) => v));
  const f = $("#filters");
  for (const name of ["state", "task", "owner", "key"]) f[name].value = view.filter[name] || "";
  view.cursors = []; view.cursor = null;
  loadRuns(); loadCounts();
}

// ---- one run ----

async function openRun(ik) {
  if (view.open !== ik) {
    view.stream?.abort();
    view.open = ik; view.events = []; view.detail = null;
    $("#events").replaceChildren();
    $("#step-value").hidden = true;
    $("#answer").textContent = "";
    hideConfirm();
    streamEvents(ik);
  }
  $("#detail").classList.add("on");
  for (const tr of document.querySelectorAll("#runs tbody tr")) tr.classList.toggle("open", tr.dataset.key === ik);
  await loadDetail();
}

async function loadDetail() {
  const ik = view.open;
  if (!ik) return;
  let d;
  try { d = await api(`/runs/${ik}`); } catch (e) { $("#answer").textContent = e.message; return; }
  if (view.open !== ik) return;
  view.detail = d;
  $("#d-key").textContent = d.idempotency_key;
  $("#d-task").textContent = d.task;
  $("#d-owner").textContent = d.owner ?? "(service)";
  $("#d-state").textContent = d.status;
  $("#d-state").className = `state ${d.status}`;
  $("#detail").dataset.state = d.status;
  $("#d-attempt").textContent = `${d.attempt} of ${d.max_attempts}`;
  $("#d-failed").textContent = String(d.failed_attempts);
  $("#d-created").textContent = d.created_at;
  const w = d.waiting;
  $("#d-waiting").textContent = !w ? "" : w.kind === "sleep" ? `asleep until ${w.until}`
    : w.kind === "signal" ? `waiting for signal ${w.name}` : `waiting for ${w.kind}`;
  $("#d-input").textContent = JSON.stringify(d.input, null, 2);
  $("#d-result").textContent = d.error ? `${d.error.code}: ${d.error.message}`
    : d.output !== null && d.output !== undefined ? JSON.stringify(d.output, null, 2)
    : d.cancel_reason ? `cancelled: ${d.cancel_reason}` : d.suspended_reason ? `suspended: ${d.suspended_reason}` : "(not finished)";
  const failed = d.attempts || [];
  $("#attempts").replaceChildren(...(failed.length ? failed.map(a => el("li", `attempt ${a.attempt} at ${a.at ?? "?"}: ${a.code}: ${a.message}`))
    : [el("li", "none", "muted")]));
  $("#steps tbody").replaceChildren(...d.steps.map(s => {
    const tr = el("tr");
    const key = el("td"); const a = el("a", s.key); a.href = "#"; key.append(a);
    a.onclick = (ev) => { ev.preventDefault(); showStep(s.key); };
    tr.append(key, el("td", s.origin), el("td", s.attempt ?? "–"), el("td", s.at ?? "–"),
      el("td", s.duration_ms === null || s.duration_ms === undefined ? "–" : `${s.duration_ms} ms`), el("td", `${s.size} B`));
    return tr;
  }));
  const kids = d.children || [];
  $("#children-box").hidden = kids.length === 0;
  $("#children").replaceChildren(...kids.map(c => {
    const li = el("li"); const a = el("a", `${c.task} ${c.idempotency_key.slice(0, 12)}… (${c.status ?? "collected"})`);
    a.href = "#"; a.onclick = (ev) => { ev.preventDefault(); openRun(c.idempotency_key); };
    li.append(a); return li;
  }));
  for (const b of document.querySelectorAll("#actions button")) b.disabled = !VALID[b.dataset.action].includes(d.status);
}

async function showStep(key) {
  const box = $("#step-value");
  try {
    const v = await api(`/runs/${view.open}/steps/${encodeURIComponent(key)}`);
    box.textContent = `${key} =\n${JSON.stringify(v.value, null, 2)}`;
  } catch (e) { box.textContent = e.message; }
  box.hidden = false;
}

// The open run's events, live, resumed after a drop at the last id.
async function streamEvents(ik) {
  const abort = new AbortController();
  view.stream = abort;
  let last = view.events.at(-1)?.id || 0;
  for (let failures = 0; !abort.signal.aborted && failures < 20;) {
    $("#live").textContent = "(live)";
    try {
      const res = await fetch(`${base}/api/runs/${ik}/events`, {
        headers: last ? { "last-event-id": String(last) } : {}, signal: abort.signal,
      });
      if (res.status === 204) break;
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      for await (const f of frames(res.body)) {
        if (f.event === "ready" || !f.id) continue;
        const id = Number(f.id);
        if (id <= last) continue;
        last = id;
        addEvent({ id, event: f.event, data: f.data });
        if (["completed", "failed", "cancelled", "suspended", "waiting", "wait_ended"].includes(f.event)) loadDetail();
      }
      failures = 0;
      if (view.detail && ["completed", "failed", "cancelled"].includes(view.detail.status)) break;
    } catch (e) {
      if (abort.signal.aborted) return;
      failures++;
    }
    $("#live").textContent = "(reconnecting…)";
    await new Promise(r => setTimeout(r, 1000));
  }
  if (view.stream === abort) $("#live").textContent = "(ended)";
}

function addEvent(e) {
  view.events.push(e);
  const tr = el("tr");
  tr.dataset.id = String(e.id);
  const data = el("td"); data.append(el("code", e.data));
  tr.append(el("td", String(e.id)), el("td", e.event), data);
  $("#events").append(tr);
  const box = $("#timeline"); box.scrollTop = box.scrollHeight;
}

// Splits an SSE byte stream into frames {id, event, data} (only frames with their own id: ids).
async function* frames(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", frame = { id: "", event: "", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (frame.data.length) yield { id: frame.id, event: frame.event || "message", data: frame.data.join("\n") };
        frame = { id: "", event: "", data: [] };
      } else if (!line.startsWith(":")) {
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? "" : line.slice(c + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "data") frame.data.push(v); else if (field === "event") frame.event = v; else if (field === "id") frame.id = v;
      }
    }
  }
}

// ---- actions: each asks first, then shows the server's answer ----

function ask(action) {
  view.pending = action;
  const d = view.detail;
  $("#confirm-text").textContent = action === "signal"
    ? `Send a signal to this ${d.task} run (owner ${d.owner ?? "service"})?`
    : `${action[0].toUpperCase()}${action.slice(1)} this ${d.task} run (owner ${d.owner ?? "service"}, ${d.status})?`;
  $("#confirm-reason").hidden = !["stop", "cancel"].includes(action);
  $("#confirm-signal").hidden = action !== "signal";
  $("#confirm").classList.add("on");
}

function hideConfirm() { view.pending = null; $("#confirm").classList.remove("on"); }

async function confirmed() {
  const action = view.pending;
  const ik = view.open;
  hideConfirm();
  const answer = $("#answer");
  answer.className = "";
  try {
    let status;
    if (action === "signal") {
      const name = $("#confirm-signal input").value.trim();
      const text = $("#confirm-signal textarea").value;
      let payload;
      try { payload = JSON.parse(text); } catch (e) { throw new Error(`the payload is not JSON: ${e.message}`); }
      status = await api(`/runs/${ik}/signals/${encodeURIComponent(name)}`, {
        method: "POST", headers: { "content-type": "application/json", "idempotency-key": crypto.randomUUID() },
        body: JSON.stringify(payload),
      });
      answer.textContent = `signal ${name} sent; the run is ${status.status}`;
    } else {
      const reason = $("#confirm-reason input").value.trim();
      status = await api(`/runs/${ik}/${action}`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: reason ? JSON.stringify({ reason }) : "",
      });
      answer.textContent = `${action}: the run is now ${status.status}`;
    }
    // Re-attach at once (the stream of a suspended run ended), after the last id seen.
    if (action === "resume" && view.open === ik) { view.stream?.abort(); streamEvents(ik); }
  } catch (e) {
    answer.className = "error";
    answer.textContent = `${action} refused: ${e.message}`;
  }
  loadDetail(); loadRuns(); loadCounts();
}

// ---- health ----

function spark(svg, values) {
  const w = Number(svg.getAttribute("width")), h = Number(svg.getAttribute("height"));
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - 2 - (v / max) * (h - 4)}`);
  svg.innerHTML = values.length > 1 ? `<polyline fill="none" stroke="#3a7bd5" stroke-width="1.5" points="${pts.join(" ")}"/>` : "";
}

function bars(svg, labels, counts) {
  const w = Number(svg.getAttribute("width")), h = Number(svg.getAttribute("height")) - 14;
  const max = Math.max(1, ...counts);
  const bw = w / counts.length;
  svg.innerHTML = counts.map((c, i) => {
    const bh = (c / max) * h;
    return `<rect x="${i * bw + 1}" y="${h - bh}" width="${bw - 2}" height="${bh}" fill="#3a7bd5"><title>≤ ${labels[i]}: ${c}</title></rect>`
      + (i % 2 === 0 ? `<text x="${i * bw + 1}" y="${h + 12}" font-size="9" fill="#5b6475">${labels[i]}</text>` : "");
  }).join("");
}

function rates(samples, field) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].at_ms - samples[i - 1].at_ms) / 1000;
    out.push(dt > 0 ? Math.max(0, samples[i][field] - samples[i - 1][field]) / dt : 0);
  }
  return out;
}

async function loadHealth() {
  let h;
  try { h = await api("/health"); } catch { return; }
  const store = $("#store");
  store.textContent = h.store === "ok" ? "ok" : "failed-stop: restart the process";
  store.className = h.store === "ok" ? "store-ok" : "store-failed";
  $("#streams").textContent = String(h.open_streams);
  const steps = rates(h.samples, "steps_executed"), events = rates(h.samples, "events_committed");
  spark($("#steps-chart"), steps); spark($("#events-chart"), events);
  $("#steps-rate").textContent = `now ${(steps.at(-1) ?? 0).toFixed(1)}/s · max ${Math.max(0, ...steps).toFixed(1)}/s`;
  $("#events-rate").textContent = `now ${(events.at(-1) ?? 0).toFixed(1)}/s · max ${Math.max(0, ...events).toFixed(1)}/s`;
  bars($("#latency-chart"), [...h.commit_micros.bounds, "more"], [...h.commit_micros.counts, h.commit_micros.above]);
  bars($("#group-chart"), [...h.group_size.bounds, "more"], [...h.group_size.counts, h.group_size.above]);
}

// ---- start ----

export function start(at) {
  base = at;
  const f = $("#filters");
  for (const s of STATES) { const o = el("option", s); o.value = s; f.state.append(o); }
  f.onsubmit = (ev) => {
    ev.preventDefault();
    setFilter({ state: f.state.value, task: f.task.value.trim(), owner: f.owner.value.trim(), key: f.key.value.trim() });
  };
  $("#clear").onclick = () => setFilter({});
  $("#older").onclick = () => { if (!view.next) return; view.cursors.push(view.cursor); view.cursor = view.next; loadRuns(); };
  $("#newest").onclick = () => { view.cursors = []; view.cursor = null; loadRuns(); };
  for (const b of document.querySelectorAll("#actions button")) b.onclick = () => ask(b.dataset.action);
  $("#confirm-yes").onclick = confirmed;
  $("#confirm-no").onclick = hideConfirm;
  const tick = () => { loadRuns(); loadCounts(); loadHealth(); if (view.open) loadDetail(); };
  tick();
  setInterval(tick, POLL_MS);
}
