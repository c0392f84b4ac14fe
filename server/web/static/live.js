// The live view: GET /v1/fmoe/stats, drawn once per frame. The server
// observes the model only while this stream is open, so closing the view
// gives its (small) cost back.

const $ = (id) => document.getElementById(id);
const PHASES = ["mixer_ms", "routing_ms", "expert_io_ms", "expert_compute_ms", "other_ms"];
const COLORS = ["--mixer", "--routing", "--io", "--compute", "--other"];

export class Live {
  constructor(deps) {
    this.deps = deps;
    this.ctrl = null;
    this.cfg = null;
    this.steps = [];   // recent step events, newest last
    this.tokens = [];  // routing of the recent tokens: [layer][K ids]
    this.counts = null; // [layer*experts] uses over this.tokens
    this.frame = false;
    this.stepCount = 0;
    $("heat-n").onchange = () => { this.trim(); this.draw(); };
    $("heat").onmousemove = (e) => this.hover(e);
    $("heat").onmouseleave = () => { $("heat-hover").textContent = ""; };
  }

  get window() { return parseInt($("heat-n").value, 10); }

  async start() {
    if (this.ctrl) return;
    const ctrl = (this.ctrl = new AbortController());
    this.state("connecting");
    try {
      const r = await this.deps.authorized(() => this.deps.api("/v1/fmoe/stats", { signal: ctrl.signal }));
      this.state("on");
      await this.deps.events(r, (name, data) => this.event(name, JSON.parse(data)));
    } catch (e) {
      if (e.name === "AbortError") return;
      this.state("error: " + e.message);
    }
    if (this.ctrl === ctrl) {
      this.ctrl = null;
      if (!String($("live-state").textContent).startsWith("error")) this.state("ended");
    }
  }

  stop() {
    if (this.ctrl) this.ctrl.abort();
    this.ctrl = null;
    this.state("off");
  }

  state(s) {
    const e = $("live-state");
    e.textContent = s;
    e.classList.toggle("on", s === "on");
  }

  event(name, ev) {
    if (name === "config") {
      this.cfg = ev;
      this.steps = [];
      this.tokens = [];
      this.counts = new Uint32Array(ev.layers * ev.experts);
      const heat = $("heat");
      heat.width = ev.experts;
      heat.height = ev.layers;
      heat.style.height = Math.min(260, Math.max(ev.layers * 10, 80)) + "px";
      $("heat-max").textContent = "expert " + (ev.experts - 1);
    } else if (name === "step" && this.cfg) {
      this.stepCount++;
      this.steps.push(ev);
      const { k, layers } = this.cfg;
      for (let t = 0; t < ev.route_tokens; t++) {
        const tok = [];
        for (let l = 0; l < layers; l++) {
          const ids = (ev.routes[l] || []).slice(t * k, (t + 1) * k);
          tok.push(ids);
          for (const e of ids) this.counts[l * this.cfg.experts + e]++;
        }
        this.tokens.push(tok);
      }
      this.trim();
    }
    if (!this.frame) {
      this.frame = true;
      requestAnimationFrame(() => { this.frame = false; this.draw(); });
    }
  }

  // trim keeps the last window tokens (and as many steps) in the counts.
  trim() {
    const n = this.window;
    while (this.tokens.length > n) {
      const tok = this.tokens.shift();
      tok.forEach((ids, l) => { for (const e of ids) this.counts[l * this.cfg.experts + e]--; });
    }
    while (this.steps.length > n) this.steps.shift();
  }

  draw() {
    if (!this.cfg) return;
    document.body.dataset.liveSteps = String(this.stepCount);
    this.tiles();
    this.split();
    this.heat();
  }

  tiles() {
    const dec = this.steps.filter((s) => s.kind === "decode");
    const all = dec.length ? dec : this.steps;
    let tok = 0, bytes = 0, probed = 0, hits = 0, gProbed = 0, gHits = 0, gpu = false, hProbed = 0, hHits = 0, host = false;
    for (const s of all) {
      tok += s.tokens; bytes += s.experts.bytes;
      const c = s.experts.cache;
      if (c.page_cache) { probed += c.page_cache.probed; hits += c.page_cache.hits; }
      if (c.gpu) { gpu = true; gProbed += c.gpu.probed; gHits += c.gpu.hits; }
      if (c.host) { host = true; hProbed += c.host.probed; hHits += c.host.hits; }
    }
    $("s-rate").textContent = dec.length ? (dec.length / (dec.reduce((a, s) => a + s.wall_ms, 0) / 1000)).toFixed(1) : "–";
    $("s-bytes").textContent = tok ? (bytes / tok / 1e6).toFixed(2) : "–";
    $("s-page").textContent = probed ? Math.round((100 * hits) / probed) + "%" : "–";
    $("s-gpu").textContent = gpu && gProbed ? Math.round((100 * gHits) / gProbed) + "%" : "–";
    $("s-gpu-u").textContent = !gpu ? "no GPU tier" :
      "of experts" + (host && hProbed ? "; host tier " + Math.round((100 * hHits) / hProbed) + "% of the rest" : "");
  }

  // split draws, per layer, the mean time per token of each phase over
  // the recent steps (decode ones when there are any), stacked.
  split() {
    const { layers, full_attention: full } = this.cfg;
    const dec = this.steps.filter((s) => s.kind === "decode");
    const use = dec.length ? dec : this.steps;
    const per = Array.from({ length: layers }, () => new Float64Array(PHASES.length));
    let tok = 0;
    for (const s of use) {
      tok += s.tokens;
      s.layers.forEach((L, l) => PHASES.forEach((p, i) => { per[l][i] += L[p]; }));
    }
    const c = $("split");
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 320;
    const row = Math.max(5, Math.min(16, Math.floor(240 / layers)));
    const label = 22;
    c.width = Math.round(w * dpr);
    c.height = Math.round(row * layers * dpr);
    c.style.height = row * layers + "px";
    const g = c.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, row * layers);
    if (!tok) {
      $("split-note").textContent = "Waiting for the model to generate.";
      return;
    }
    let max = 0;
    for (const p of per) max = Math.max(max, p.reduce((a, b) => a + b, 0) / tok);
    const css = getComputedStyle(document.documentElement);
    const colors = COLORS.map((v) => css.getPropertyValue(v).trim());
    g.font = Math.min(10, row - 1) + "px system-ui, sans-serif";
    g.textBaseline = "middle";
    for (let l = 0; l < layers; l++) {
      const y = l * row;
      g.fillStyle = css.getPropertyValue("--dim");
      if (row >= 8) g.fillText((full[l] ? "A" : "") + l, 0, y + row / 2);
      let x = label;
      PHASES.forEach((_, i) => {
        const dx = ((w - label) * per[l][i]) / tok / max;
        g.fillStyle = colors[i];
        g.fillRect(x, y + 1, dx, row - 2);
        x += dx;
      });
    }
    $("split-note").textContent = "Mean over the last " + use.length + " " + (dec.length ? "decode" : "prefill") +
      " steps; the longest layer takes " + max.toFixed(3) + " ms per token. A: full attention; the other layers are GatedDeltaNet.";
  }

  heat() {
    const { layers, experts } = this.cfg;
    const c = $("heat");
    const g = c.getContext("2d");
    const img = g.createImageData(experts, layers);
    const n = Math.max(1, this.tokens.length);
    for (let i = 0; i < layers * experts; i++) {
      const [r, gg, b] = ramp(this.counts[i] / n);
      img.data.set([r, gg, b, 255], i * 4);
    }
    g.putImageData(img, 0, 0);
  }

  hover(e) {
    if (!this.cfg) return;
    const c = $("heat");
    const r = c.getBoundingClientRect();
    const ex = Math.floor(((e.clientX - r.left) / r.width) * this.cfg.experts);
    const l = Math.floor(((e.clientY - r.top) / r.height) * this.cfg.layers);
    if (ex < 0 || l < 0 || ex >= this.cfg.experts || l >= this.cfg.layers) return;
    $("heat-hover").textContent = "layer " + l + ", expert " + ex + ": " + this.counts[l * this.cfg.experts + ex] + " of " + this.tokens.length + " tokens";
  }
}

// ramp maps 0..1 to a dark-blue → orange → yellow scale.
function ramp(x) {
  if (x <= 0) return [13, 16, 32];
  const stops = [[13, 16, 32], [46, 58, 140], [190, 70, 110], [245, 150, 60], [252, 240, 150]];
  const p = Math.min(1, Math.sqrt(x)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(p));
  const f = p - i;
  return stops[i].map((v, j) => Math.round(v + (stops[i + 1][j] - v) * f));
}
