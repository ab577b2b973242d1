"use strict";
// Model text only ever reaches the page through textContent / Text nodes, never innerHTML: a reply that contains
// markup is shown as the characters it is.
const $ = (id) => document.getElementById(id);
const ui = Object.fromEntries(["form", "model", "max-tokens", "key", "prompt", "send", "stop", "status", "error",
  "notice", "answer", "task-id", "handoff-time", "replica", "ttft", "tps", "finish", "usage"].map((id) => [id, $(id)]));
const STREAM_PATH = "/sse/chat/completions/";
const MAX_RETRIES = 5;     // consecutive failed reconnects before giving up; any event received resets the count
const BACKOFF_MS = 250;    // the wait before a reconnect, doubled after each failure, at most MAX_BACKOFF_MS
const MAX_BACKOFF_MS = 4000;
const KEY_STORAGE = "handoff-api-key";

let run = null;            // the completion in progress, or null

class ShownError extends Error {}   // a final error, already worded for the person: no retry

const setText = (name, text) => { ui[name].textContent = text; };
const setStatus = (text) => setText("status", text);
function showError(text) { ui.error.textContent = text; ui.error.hidden = !text; }
function showNotice(text) { ui.notice.textContent = text; ui.notice.hidden = !text; }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The key is kept in sessionStorage: it survives a reload of this tab, not the tab itself.
ui.key.value = sessionStorage.getItem(KEY_STORAGE) || "";
ui.key.addEventListener("change", () => {
  const key = ui.key.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
  loadModels();   // with HANDOFF_AUTH=required the list itself needs the key
});

function headers(extra = {}) {
  const key = ui.key.value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// Handoff's errors are OpenAI's: {"error":{"message","type","param","code"}}. Anything else (a proxy's page) is
// shown as its status and the start of its text.
function describe(error, status) {
  const where = [error.code || error.type, error.param && `param ${error.param}`, status && `HTTP ${status}`];
  return `${error.message} (${where.filter(Boolean).join(", ")})`;
}
async function errorOf(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    if (error && error.message) return describe(error, response.status);
  } catch (_) { /* not JSON */ }
  return `HTTP ${response.status}: ${text.slice(0, 200) || response.statusText}`;
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) throw new ShownError(await errorOf(response));
    const { data } = await response.json();
    const chosen = ui.model.value;
    ui.model.replaceChildren(...data.map((model) => new Option(model.id, model.id)));
    if (data.some((model) => model.id === chosen)) ui.model.value = chosen;
    showError("");
    if (!run) setStatus(`Ready: ${data.length} model${data.length === 1 ? "" : "s"}.`);
  } catch (error) {
    showError(`Could not list the models: ${error.message}`);
    if (!run) setStatus("No models.");
  }
}

function resetOutput() {
  for (const name of ["task-id", "handoff-time", "replica", "ttft", "tps", "finish", "usage"]) setText(name, "–");
  showError(""); showNotice("");
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.answer.setAttribute("aria-busy", String(busy));
}

async function send() {
  if (run) return;
  resetOutput();
  const body = { model: ui.model.value, stream: true, stream_options: { include_usage: true },
                 messages: [{ role: "user", content: ui.prompt.value }] };
  if (ui["max-tokens"].value) body.max_tokens = Number(ui["max-tokens"].value);
  // One Text node per answer, appended to: cheap per token, and never parsed as HTML.
  const text = document.createTextNode("");
  ui.answer.replaceChildren(text);
  run = { controller: new AbortController(), sentAt: performance.now(), text, lastId: null, tokens: 0,
          firstAt: null, finish: null, failed: false, cancelling: false, taskId: null, token: null, streamUrl: null };
  setBusy(true);
  setStatus("Sending…");
  try {
    // fetch follows the API's 302 to the SSE replica by itself (POST → GET on the same origin, Authorization kept).
    const response = await fetch("/api/chat/completions", { method: "POST", body: JSON.stringify(body),
      headers: headers({ "Content-Type": "application/json" }),
      signal: run.controller.signal });
    if (!response.ok) throw new ShownError(await errorOf(response));
    // The final URL is the hand-off's Location: /sse/chat/completions/<task id>?token=<stream token>.
    const url = new URL(response.url);
    if (!url.pathname.startsWith(STREAM_PATH)) throw new ShownError(`Not handed off to a stream: ${url.pathname}`);
    run.streamUrl = url.href;
    run.taskId = decodeURIComponent(url.pathname.slice(STREAM_PATH.length));
    run.token = url.searchParams.get("token");
    setText("task-id", run.taskId);
    const now = new Date();
    const clock = `${now.toLocaleTimeString([], { hour12: false })}.${String(now.getMilliseconds()).padStart(3, "0")}`;
    setText("handoff-time", `${clock} (+${Math.round(performance.now() - run.sentAt)} ms)`);
    await follow(response);
    const reason = run.finish || "none";
    setStatus(run.failed ? `Failed (finish_reason: ${reason}).`
      : run.finish === "cancelled" ? "Cancelled (finish_reason: cancelled)." : `Done (finish_reason: ${reason}).`);
  } catch (error) {
    if (error.name === "AbortError") setStatus("Stopped before the hand-off.");
    else { showError(error.message); setStatus("Failed."); }
  } finally {
    setBusy(false);
    run = null;
    ui.prompt.focus();
  }
}

// Reads the stream to `data: [DONE]`. A network error, a body that ends without [DONE] or a replica's
// `stream_interrupted` event is not the end: reconnect to the same stream URL with `Last-Event-ID`, and the
// replica (any of them) sends only the events after it.
async function follow(response) {
  let failures = 0, why = "";
  for (;;) {
    const before = run.lastId;
    try {
      if (!response) {
        await sleep(Math.min(BACKOFF_MS * 2 ** (failures - 1), MAX_BACKOFF_MS));
        const resume = run.lastId === null ? {} : { "Last-Event-ID": run.lastId };
        response = await fetch(run.streamUrl, { headers: headers({ Accept: "text/event-stream", ...resume }) });
        // 4xx (token expired, task gone, another key) will not get better; 5xx (no replica up yet) may.
        if (response.status >= 400 && response.status < 500) throw new ShownError(await errorOf(response));
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        showNotice(`Stream interrupted (${why}); reconnected to ${response.headers.get("X-Handoff-Replica")
          || "a replica"}, ${run.lastId === null ? "restarted from the first event" : `resumed after event ${run.lastId}`}.`);
      }
      setText("replica", response.headers.get("X-Handoff-Replica") || "?");
      setStatus("Streaming…");
      if (await readEvents(response)) return;
      why = "the stream ended before [DONE]";
    } catch (error) {
      if (error instanceof ShownError) throw error;
      why = error.message;
    }
    response = null;
    failures = run.lastId !== before ? 1 : failures + 1;
    if (failures > MAX_RETRIES) throw new ShownError(`Gave up after ${MAX_RETRIES} reconnects: ${why}.`);
    setStatus(`Interrupted (${why}); reconnecting, attempt ${failures} of ${MAX_RETRIES}…`);
  }
}

// A small SSE parser (the WHATWG rules Handoff uses: LF/CR/CRLF line ends, `:` comments such as the `: ping`
// keepalive, `id:` and multi-line `data:`). Returns true at [DONE], false when the body ends first.
async function readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", id = null, data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      // A CR at the very end may be the first half of a CRLF: keep it for the next read.
      const end = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(end);
      for (const line of lines) {
        if (line === "") {               // a blank line ends the event
          if (data.length && handle(id, data.join("\n"))) return true;
          id = null; data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") data.push(value); else if (field === "id") id = value;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});    // closes the connection when we stop early
  }
}

// One event; true at [DONE].
function handle(id, data) {
  if (data === "[DONE]") return true;
  // Never show an event twice: after a resume, anything at or before the last event seen is skipped.
  if (id !== null && run.lastId !== null && Number(id) <= Number(run.lastId)) return false;
  const chunk = JSON.parse(data);
  if (chunk.error) {
    // A draining replica's goodbye (no id): the completion goes on, so resume elsewhere.
    if (chunk.error.code === "stream_interrupted") throw new Error("the replica is shutting down");
    run.failed = true;
    showError(describe(chunk.error));
  }
  for (const choice of chunk.choices || []) {
    const content = choice.delta && choice.delta.content;
    if (content) {
      const now = performance.now();
      if (run.firstAt === null) { run.firstAt = now; setText("ttft", `${Math.round(now - run.sentAt)} ms`); }
      run.tokens += 1;                  // a content chunk is about a token
      // Follow the text as it grows, unless the reader has scrolled up to read.
      const atEnd = ui.answer.scrollHeight - ui.answer.scrollTop - ui.answer.clientHeight < 24;
      run.text.appendData(content);
      if (atEnd) ui.answer.scrollTop = ui.answer.scrollHeight;
      if (run.tokens > 1) setText("tps", ((run.tokens - 1) / ((now - run.firstAt) / 1000)).toFixed(1));
    }
    if (choice.finish_reason) { run.finish = choice.finish_reason; setText("finish", choice.finish_reason); }
  }
  if (chunk.usage) {
    const u = chunk.usage;
    setText("usage", `${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ${u.total_tokens} tokens`);
  }
  if (id !== null) run.lastId = id;
  return false;
}

// Stop: before the hand-off, drop the POST; after it, ask the API to cancel the task. The stream then ends by
// itself with finish_reason "cancelled", the usage so far and [DONE], which the page shows as it comes.
async function stop() {
  if (!run) return;
  if (!run.taskId) { run.controller.abort(); return; }
  if (run.cancelling) return;          // one cancel per run (Esc and the button alike)
  run.cancelling = true;
  ui.stop.disabled = true;
  setStatus("Cancelling…");
  try {
    const url = `/api/chat/completions/${encodeURIComponent(run.taskId)}/cancel?token=${encodeURIComponent(run.token)}`;
    const response = await fetch(url, { method: "POST", headers: headers() });
    if (!response.ok) showError(`Cancel: ${await errorOf(response)}`);   // e.g. 409: it had already ended
  } catch (error) {
    showError(`Cancel: ${error.message}`);
  }
}

ui.form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
ui.stop.addEventListener("click", stop);
ui.prompt.addEventListener("keydown", (event) => {
  // Enter (with or without Ctrl/Cmd) sends through the form, so its checks (a prompt, max tokens ≥ 1) apply.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
document.addEventListener("keydown", (event) => { if (event.key === "Escape" && run) stop(); });

loadModels();
ui.prompt.focus();
