// The chat page: one conversation with the served model over
// POST /v1/chat/completions (streamed), and the live view of
// GET /v1/fmoe/stats beside it. Model output only ever reaches the DOM as
// text (md.js); nothing here parses HTML.
import { render } from "./md.js";
import { api, events, setAPIKey, Unauthorized } from "./api.js";
import { Live } from "./live.js";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// The tools fmoe-tiny-chat was trained with (models/fmoe-tiny-chat/tools.json).
const EXAMPLE_TOOLS = [
  { type: "function", function: { name: "get_weather", description: "Current weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city"] } } },
  { type: "function", function: { name: "bash", description: "Run a shell command",
    parameters: { type: "object", properties: { command: { type: "string" } }, required: ["command"] } } },
];

const chat = { messages: [], abort: null };

// ---- settings (kept in localStorage; the API key only for the session)

const SETTINGS = ["system", "temperature", "max-tokens", "tools"];
function loadSettings() {
  for (const id of SETTINGS) {
    const v = localStorage.getItem("fmoe." + id);
    if (v !== null) $(id).value = v;
  }
  const th = localStorage.getItem("fmoe.thinking");
  if (th !== null) $("thinking").checked = th === "1";
}
function saveSettings() {
  for (const id of SETTINGS) localStorage.setItem("fmoe." + id, $(id).value);
  localStorage.setItem("fmoe.thinking", $("thinking").checked ? "1" : "0");
}

// requestOptions reads the settings into request fields, or throws with a
// message for the user.
function requestOptions() {
  const o = {};
  const t = parseFloat($("temperature").value);
  if (!(t >= 0 && t <= 2)) throw new Error("temperature must be a number from 0 to 2");
  o.temperature = t;
  const n = parseInt($("max-tokens").value, 10);
  if (!(n >= 1)) throw new Error("max tokens must be at least 1");
  o.max_tokens = n;
  o.chat_template_kwargs = { enable_thinking: $("thinking").checked };
  const tools = $("tools").value.trim();
  if (tools) {
    let v;
    try { v = JSON.parse(tools); } catch (e) { throw new Error("tools: not JSON: " + e.message); }
    if (!Array.isArray(v)) throw new Error("tools must be a JSON array");
    if (v.length) o.tools = v;
  }
  return o;
}

// ---- the API key

let keyPrompt = null;
// askKey shows the key dialog once for however many callers wait on it.
function askKey(why) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve, reject) => {
      $("key-error").textContent = why || "";
      $("key").value = "";
      $("key-dialog").showModal();
      $("key-form").onsubmit = () => {
        setAPIKey($("key").value.trim());
        keyPrompt = null;
        resolve();
      };
      // Escape: the caller fails instead of waiting for ever.
      $("key-dialog").oncancel = () => {
        keyPrompt = null;
        reject(new Error("this server needs an API key"));
      };
    });
  }
  return keyPrompt;
}

// authorized runs fn, asking for a key and retrying while it gets 401.
export async function authorized(fn) {
  let why = "";
  for (;;) {
    try { return await fn(); } catch (e) {
      if (!(e instanceof Unauthorized)) throw e;
      await askKey(why);
      why = "That key was refused; try again.";
    }
  }
}

// ---- messages

const views = new WeakMap(); // message -> its DOM

function addView(m) {
  $("empty").hidden = true;
  const root = el("div", "msg " + m.role);
  root.append(el("div", "who", { user: "You", assistant: "Model", tool: "Tool result" }[m.role]));
  const v = { root, body: el("div", "body") };
  if (m.role === "assistant") {
    v.reasoning = el("details", "reasoning");
    v.reasoning.append(el("summary", "", "Reasoning"), (v.reasoningText = el("div", "text")));
    v.reasoning.hidden = true;
    v.calls = el("div", "calls");
    v.metrics = el("div", "metrics");
    root.append(v.reasoning, v.body, v.calls, v.metrics);
  } else {
    root.append(v.body);
  }
  views.set(m, v);
  $("messages").append(root);
  paint(m);
  return v;
}

function paint(m) {
  const v = views.get(m);
  if (m.role !== "assistant") {
    v.body.textContent = m.role === "tool" ? m.name + " → " + m.content : m.content;
    return;
  }
  if (m.reasoning) {
    v.reasoning.hidden = false;
    v.reasoningText.textContent = m.reasoning;
    v.reasoning.querySelector("summary").textContent = m.streaming && !m.content && !m.calls.length ? "Reasoning…" : "Reasoning";
  }
  render(v.body, m.content);
  v.body.classList.toggle("cursor", !!m.streaming);
  v.calls.replaceChildren(...m.calls.map((c, i) => callView(m, c, i)));
  v.metrics.replaceChildren(...metrics(m));
}

function callView(m, c, i) {
  const box = el("div", "call");
  box.append(el("div", "name", c.name || "…"));
  let args = c.args;
  try { args = JSON.stringify(JSON.parse(c.args), null, 2); } catch { /* still streaming, or not JSON */ }
  box.append(el("pre", "args", args));
  if (c.result !== undefined) {
    box.append(el("div", "result", "result sent: " + c.result));
  } else if (!m.streaming && m.finish === "tool_calls" && !chat.abort) {
    // The page runs no tool: the user answers for it.
    const f = el("form");
    const input = el("input");
    input.placeholder = 'Result for the model, e.g. {"temp": 18, "condition": "sunny"}';
    input.setAttribute("aria-label", "result of " + c.name);
    const b = el("button", "", "Send result");
    b.type = "submit";
    f.append(input, b);
    f.onsubmit = (e) => {
      e.preventDefault();
      answerCall(m, i, input.value);
    };
    box.append(f);
  }
  return box;
}

function metrics(m) {
  const out = [];
  const add = (text, cls) => out.push(el("span", cls || "", text));
  if (m.ttft !== undefined) add("first token " + ms(m.ttft));
  const u = m.usage, t = m.timings;
  if (u) {
    const cached = u.prompt_tokens_details ? u.prompt_tokens_details.cached_tokens : 0;
    add("prompt " + u.prompt_tokens + " tok" + (t && t.prompt_n ? " at " + rate(t.prompt_per_second) : ""));
    add(cached + " reused");
    add("reply " + u.completion_tokens + " tok" + (t ? " at " + rate(t.predicted_per_second) : ""));
  }
  if (m.stopped) add("stopped", "stopped");
  if (m.error) add("error: " + m.error, "failed");
  return out;
}

const ms = (x) => (x < 1000 ? Math.round(x) + " ms" : (x / 1000).toFixed(2) + " s");
const rate = (r) => (r >= 100 ? Math.round(r) : r.toFixed(1)) + " tok/s";

// Repainting on every chunk would redo the Markdown per token; once per
// frame is plenty.
const dirty = new Set();
function schedule(m) {
  if (!dirty.size) requestAnimationFrame(() => { for (const d of dirty) paint(d); dirty.clear(); scrollDown(); });
  dirty.add(m);
}

function scrollDown() {
  const box = $("messages");
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
}

// wire is the conversation as the API takes it.
function wire() {
  const out = [];
  const sys = $("system").value.trim();
  if (sys) out.push({ role: "system", content: sys });
  for (const m of chat.messages) {
    if (m.role === "assistant") {
      const w = { role: "assistant", content: m.content };
      if (m.calls.length) w.tool_calls = m.calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.args } }));
      out.push(w);
    } else if (m.role === "tool") {
      out.push({ role: "tool", tool_call_id: m.id, content: m.content });
    } else {
      out.push({ role: m.role, content: m.content });
    }
  }
  return out;
}

// ---- generation

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  document.body.classList.toggle("busy", busy);
}

async function generate() {
  let opts;
  try { opts = requestOptions(); } catch (e) {
    $("settings").hidden = false;
    $("toggle-settings").setAttribute("aria-expanded", "true");
    $("settings-error").textContent = e.message;
    return;
  }
  $("settings-error").textContent = "";
  saveSettings();
  const body = JSON.stringify({ messages: wire(), stream: true, stream_options: { include_usage: true }, ...opts });
  const m = { role: "assistant", content: "", reasoning: "", calls: [], streaming: true };
  chat.messages.push(m);
  addView(m);
  scrollDown();
  const ctrl = new AbortController();
  chat.abort = ctrl;
  setBusy(true);
  const t0 = performance.now();
  try {
    const r = await authorized(() => api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body, signal: ctrl.signal,
    }));
    await events(r, (_, data) => {
      if (data === "[DONE]") return;
      const c = JSON.parse(data);
      if (c.error) { m.error = c.error.message; return; }
      if (c.usage) m.usage = c.usage;
      if (c.timings) m.timings = c.timings;
      for (const ch of c.choices || []) {
        const d = ch.delta || {};
        if (m.ttft === undefined && (d.content || d.reasoning_content || d.tool_calls)) m.ttft = performance.now() - t0;
        if (d.content) m.content += d.content;
        if (d.reasoning_content) m.reasoning += d.reasoning_content;
        for (const tc of d.tool_calls || []) {
          const call = (m.calls[tc.index || 0] ||= { id: "", name: "", args: "" });
          if (tc.id) call.id = tc.id;
          if (tc.function && tc.function.name) call.name = tc.function.name;
          if (tc.function && tc.function.arguments) call.args += tc.function.arguments;
        }
        if (ch.finish_reason) m.finish = ch.finish_reason;
      }
      schedule(m);
    });
  } catch (e) {
    if (e.name === "AbortError") m.stopped = true;
    else m.error = e.message;
  }
  m.streaming = false;
  if (m.stopped) m.calls = m.calls.filter((c) => { try { JSON.parse(c.args); return true; } catch { return false; } });
  if (m.error && !m.content && !m.calls.length) chat.messages.splice(chat.messages.indexOf(m), 1);
  chat.abort = null;
  setBusy(false);
  paint(m);
  scrollDown();
  $("input").focus();
}

function answerCall(m, i, result) {
  const c = m.calls[i];
  c.result = result;
  const t = { role: "tool", id: c.id, name: c.name, content: result };
  chat.messages.push(t);
  addView(t);
  paint(m);
  if (m.calls.every((x) => x.result !== undefined)) generate();
}

function sendInput() {
  const text = $("input").value;
  if (!text.trim() || chat.abort) return;
  $("input").value = "";
  const m = { role: "user", content: text };
  chat.messages.push(m);
  addView(m);
  generate();
}

function newChat() {
  if (chat.abort) chat.abort.abort();
  chat.messages = [];
  $("messages").replaceChildren($("empty"));
  $("empty").hidden = false;
  $("input").focus();
}

// ---- wiring

const live = new Live({ authorized, api, events });

function toggle(button, panel, on) {
  button.setAttribute("aria-expanded", String(on));
  panel.hidden = !on;
}

async function start() {
  loadSettings();
  $("composer").onsubmit = (e) => { e.preventDefault(); sendInput(); };
  $("input").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendInput(); }
  };
  $("stop").onclick = () => chat.abort && chat.abort.abort();
  $("new-chat").onclick = newChat;
  $("toggle-settings").onclick = () => toggle($("toggle-settings"), $("settings"), $("settings").hidden);
  $("example-tools").onclick = () => { $("tools").value = JSON.stringify(EXAMPLE_TOOLS, null, 2); saveSettings(); };
  $("forget-key").onclick = () => { setAPIKey(""); live.stop(); };
  for (const id of [...SETTINGS, "thinking"]) $(id).onchange = saveSettings;
  const liveOn = localStorage.getItem("fmoe.live") !== "0";
  toggle($("toggle-live"), $("live"), liveOn);
  $("toggle-live").onclick = () => {
    const on = $("live").hidden;
    toggle($("toggle-live"), $("live"), on);
    localStorage.setItem("fmoe.live", on ? "1" : "0");
    on ? live.start() : live.stop();
  };
  try {
    const r = await authorized(() => api("/v1/models"));
    const id = (await r.json()).data[0].id;
    $("model").textContent = id;
    document.title = id + " · fmoe";
  } catch (e) {
    $("model").textContent = "not connected: " + e.message;
  }
  if (liveOn) live.start();
  // A hidden tab shows nothing: let the model run unobserved meanwhile.
  document.addEventListener("visibilitychange", () => {
    if ($("live").hidden) return;
    document.hidden ? live.stop() : live.start();
  });
  $("input").focus();
}

start();
