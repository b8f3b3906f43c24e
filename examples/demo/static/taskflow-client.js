// taskflow-client.js: POST a task and stream its events (fetch + a streaming SSE parser).
// No build step; import it as an ES module. Types: taskflow-client.d.ts, events.d.ts.
//
// Reconnects like taskflow's Rust client: after a drop before the run's end it waits
// 2 s × 2^n (capped at 32×) plus 0–20 % jitter and re-POSTs the same input (the idempotency
// key makes that an attach) with Last-Event-ID = the last complete event's id; it gives up
// after 3 failed attempts in a row, and a connection that delivered `ready` resets the count.

export class HttpError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_error";
    this.path = e.path;
  }
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** Splits a byte stream into SSE events ({id, event, data}); ids persist as the spec says. */
export async function* parseSse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let frame = { id: "", event: "", data: [] };
  let lastId = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (frame.data.length > 0) {
          yield { id: frame.id === "" ? lastId : frame.id, ownId: frame.id !== "", event: frame.event || "message", data: frame.data.join("\n") };
        }
        frame = { id: "", event: "", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") frame.data.push(val);
      else if (field === "event") frame.event = val;
      else if (field === "id" && !val.includes("\0")) { frame.id = val; lastId = val; }
    }
  }
}

const sleep = (ms, signal, onReconnect = () => {}) => new Promise((resolve, reject) => {
  onReconnect(ms);
  const t = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(t); reject(signal.reason); }, { once: true });
});

/**
 * POSTs `input` to `url` and yields `{ seq, event, data }` for every event (data parsed from
 * JSON), `ready` frames included (seq 0), until the run's terminal event or a suspension.
 */
export async function* postAndStream(url, input, options = {}) {
  const { signal, headers = {}, backoffMs = 2000, retries = 3, onReconnect = () => {} } = options;
  let lastId = options.lastEventId || 0;
  let failures = 0;
  for (;;) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers, ...(lastId ? { "last-event-id": String(lastId) } : {}) },
        body: JSON.stringify(input),
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      if (++failures > retries) throw e;
      await sleep(backoffMs * 2 ** Math.min(failures - 1, 5) * (1 + Math.random() * 0.2), signal, onReconnect);
      continue;
    }
    if (response.status === 204) return; // everything was seen already
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      const error = new HttpError(response.status, body);
      if (response.status < 500 && response.status !== 429) throw error;
      if (++failures > retries) throw error;
      await sleep(backoffMs * 2 ** Math.min(failures - 1, 5) * (1 + Math.random() * 0.2), signal, onReconnect);
      continue;
    }
    let ended = false;
    let suspended = false;
    try {
      for await (const frame of parseSse(response.body)) {
        const data = JSON.parse(frame.data);
        if (frame.event === "ready") { failures = 0; yield { seq: 0, event: "ready", data }; continue; }
        if (frame.event === "error") break; // e.g. server_shutting_down: reconnect
        const seq = Number(frame.id);
        if (!frame.ownId || !(seq > lastId)) continue; // never sent twice by taskflow
        lastId = seq;
        suspended = frame.event === "suspended";
        yield { seq, event: frame.event, data };
        if (TERMINAL.has(frame.event)) { ended = true; break; }
      }
    } catch (e) {
      if (signal?.aborted) throw e;
    }
    if (ended || suspended) return;
    if (++failures > retries) throw new Error(`gave up after ${retries} reconnection attempts`);
    await sleep(backoffMs * 2 ** Math.min(failures - 1, 5) * (1 + Math.random() * 0.2), signal, onReconnect);
  }
}

/**
 * POSTs signal `name` with `payload` to the run of `ik` under `base` (e.g. "/api") and
 * resolves with the run's status JSON once the server says the signal is durable (202).
 * While the server cannot be reached or answers 5xx / 429, the same request, with the same
 * `Idempotency-Key` (chosen once per call), is sent again after the backoff (like
 * postAndStream's, up to `retries` retries), so a signal sent while the server restarts is
 * delivered once. A 4xx answer rejects with an HttpError.
 */
export async function sendSignal(base, ik, name, payload, options = {}) {
  const { signal, headers = {}, backoffMs = 2000, retries = 7, onRetry = () => {} } = options;
  const key = options.idempotencyKey || crypto.randomUUID();
  const url = `${base}/tasks/${encodeURIComponent(ik)}/signals/${encodeURIComponent(name)}`;
  for (let failures = 0; ; ) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key, ...headers },
        body: JSON.stringify(payload),
        signal,
      });
    } catch (e) {
      if (signal?.aborted || ++failures > retries) throw e;
      await sleep(backoffMs * 2 ** Math.min(failures - 1, 5) * (1 + Math.random() * 0.2), signal, onRetry);
      continue;
    }
    const body = await response.json().catch(() => null);
    if (response.ok) return body;
    const error = new HttpError(response.status, body);
    if ((response.status < 500 && response.status !== 429) || ++failures > retries) throw error;
    await sleep(backoffMs * 2 ** Math.min(failures - 1, 5) * (1 + Math.random() * 0.2), signal, onRetry);
  }
}
