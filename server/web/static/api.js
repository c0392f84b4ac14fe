// The server's API: every call carries the API key when one is set (the
// browser's EventSource cannot send headers, so streams are read from
// fetch too).

const KEY = "fmoe.apiKey";

export function apiKey() { return sessionStorage.getItem(KEY) || ""; }
export function setAPIKey(k) { k ? sessionStorage.setItem(KEY, k) : sessionStorage.removeItem(KEY); }

// Unauthorized is thrown for HTTP 401, so the caller can ask for a key.
export class Unauthorized extends Error {}

export async function api(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  const k = apiKey();
  if (k) headers.set("Authorization", "Bearer " + k);
  const r = await fetch(path, { ...opts, headers });
  if (r.status === 401) throw new Unauthorized("the API key is missing or wrong");
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error.message || msg; } catch { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

// events reads a server-sent event stream and calls fn(name, data) for
// each event ("message" when unnamed) until the stream ends.
export async function events(response, fn) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) fn(name, data.join("\n"));
    }
  }
}
