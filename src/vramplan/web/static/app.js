// vramplan page: plain JS, no build step. Inputs live in the URL query string; every change
// re-fetches /v1/estimate (and /v1/plan when the server has it), debounced, without a reload.
"use strict";

(function () {
  const FIELDS = ["model", "gpu", "gpus", "engine", "quant", "context", "batch", "kv_dtype",
    "tp", "pp", "vram"];
  const DEFAULTS = { model: "Qwen/Qwen3-8B", gpu: "rtx-4090", engine: "auto", kv_dtype: "auto" };
  const FIELD_FOR_ERROR = { // InputError.field (CLI spelling) -> input id
    MODEL: "model", config: "config", "--gpu": "gpu", "--gpus": "gpus", "--vram": "vram",
    "--quant": "quant", "--context": "context", "--batch": "batch", "--kv-dtype": "kv_dtype",
    "--tp": "tp", "--pp": "pp", "--engine": "engine", engine_options: "flags",
  };
  const DEBOUNCE_MS = 250;
  const PLAN_DELAY_MS = 400; // plans take seconds: start one only once the inputs settle
  const CATEGORIES = [
    ["weights_bytes", "weights", "weights"],
    ["kv_cache_bytes", "kv", "KV cache"],
    ["activation_bytes", "act", "activations"],
    ["overhead_bytes", "overhead", "overhead"],
  ];

  const $ = (id) => document.getElementById(id);
  let health = { plan_available: false, engines: [], quant_choices: [], allow_hub: false };
  let timer = 0;
  let controller = null;
  let seq = 0;

  // ------------------------------------------------------------ formatting (== vramplan.units)

  // Python's f"{v:.2f}" for v >= 0: correctly rounded, ties to even. toFixed breaks exact ties
  // upwards; a double has an exact tie at two decimals only at k + 1/8, 3/8, 5/8, 7/8.
  function fixed2(v) {
    if (Number.isInteger(v * 8) && !Number.isInteger(v * 4)) {
      let q = Math.floor(v * 100);
      if (q % 2 === 1) q += 1;
      return (q / 100).toFixed(2);
    }
    return v.toFixed(2);
  }

  const BINARY = [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
  const DECIMAL = [["TB", 1e12], ["GB", 1e9], ["MB", 1e6], ["kB", 1e3]];

  function fmtBytes(n, binary = true) { // vramplan.units.fmt_bytes
    const sign = n < 0 ? "-" : "";
    const v = Math.abs(n);
    for (const [name, size] of binary ? BINARY : DECIMAL) {
      if (v >= size) return `${sign}${fixed2(v / size)} ${name}`;
    }
    return `${sign}${Math.trunc(v)} B`;
  }

  function fmtCount(n) { // vramplan.units.fmt_count
    for (const [name, size] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]]) {
      if (Math.abs(n) >= size) return `${n < 0 ? "-" : ""}${fixed2(Math.abs(n) / size)}${name}`;
    }
    return String(n);
  }

  const int = (n) => Number(n).toLocaleString("en-US");

  // ------------------------------------------------------------ DOM helpers (no innerHTML)

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  // ------------------------------------------------------------ state <-> URL <-> request

  function readForm() {
    const state = {};
    for (const f of FIELDS) state[f] = $(f).value.trim();
    state.flags = $("flags").value.trim();
    state.config = $("config").value.trim();
    return state;
  }

  function parseFlags(text) {
    const out = {};
    for (const part of text.split(/[\s,]+/)) {
      if (!part) continue;
      const i = part.indexOf("=");
      const key = (i < 0 ? part : part.slice(0, i)).replace(/^-+/, "").replace(/-/g, "_");
      out[key] = i < 0 ? "true" : part.slice(i + 1);
    }
    return out;
  }

  function queryFromState(state) {
    const q = new URLSearchParams();
    for (const f of FIELDS) {
      if (state[f] && !(f in DEFAULTS && f !== "model" && f !== "gpu" && state[f] === DEFAULTS[f])) {
        q.set(f, state[f]);
      }
    }
    for (const [k, v] of Object.entries(parseFlags(state.flags))) q.set(k, v);
    return q;
  }

  function loadStateFromUrl() {
    const q = new URLSearchParams(window.location.search);
    const empty = [...q.keys()].length === 0;
    for (const f of FIELDS) {
      const v = q.get(f);
      if (v !== null) $(f).value = v;
      else if (empty && f in DEFAULTS) $(f).value = DEFAULTS[f];
      else if (f === "engine" || f === "kv_dtype") $(f).value = "auto";
      else $(f).value = "";
    }
    const flags = [];
    for (const [k, v] of q.entries()) if (!FIELDS.includes(k)) flags.push(`${k}=${v}`);
    $("flags").value = flags.join(" ");
    if (flags.length || q.get("kv_dtype") || q.get("tp") || q.get("pp") || q.get("vram")) {
      $("more").open = true;
    }
  }

  function requestBody(state) {
    const body = {};
    if (state.config) {
      try {
        body.config = JSON.parse(state.config);
      } catch (e) {
        throw inputError("config", `config: is not valid JSON (${e.message})`);
      }
    } else {
      body.model = state.model;
    }
    for (const f of FIELDS) {
      if (f !== "model" && state[f]) body[f] = state[f];
    }
    const flags = parseFlags(state.flags);
    if (Object.keys(flags).length) body.engine_options = flags;
    return body;
  }

  function inputError(field, message) {
    const e = new Error(message);
    e.field = field;
    return e;
  }

  // ------------------------------------------------------------ fetching

  async function postJson(url, body, signal) {
    const resp = await fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal,
    });
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = { error: `server answered ${resp.status} without JSON` };
    }
    return { status: resp.status, data };
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, DEBOUNCE_MS);
  }

  async function update() {
    const state = readForm();
    const q = queryFromState(state);
    const qs = q.toString();
    const url = `${window.location.pathname}${qs ? `?${qs}` : ""}`;
    if (url !== `${window.location.pathname}${window.location.search}`) {
      window.history.replaceState(null, "", url);
    }
    $("share").href = url;
    $("json-link").href = `/v1/estimate${qs ? `?${qs}` : ""}`;
    $("json-link").hidden = Boolean(state.config);

    if (controller) controller.abort();
    controller = new AbortController();
    const mySeq = ++seq;
    document.body.classList.add("busy");
    $("results").setAttribute("aria-busy", "true");
    let body;
    try {
      body = requestBody(state);
    } catch (e) {
      showError(e.message, e.field);
      done(mySeq);
      return;
    }
    if (!body.config && !body.model) {
      showError("MODEL: is empty; pick a model, e.g. qwen3-8b", "model");
      done(mySeq);
      return;
    }
    try {
      const { status, data } = await postJson("/v1/estimate", body, controller.signal);
      if (mySeq !== seq) return;
      if (status !== 200) {
        showError(data && data.error ? data.error : `error ${status}`, data && data.field);
        done(mySeq);
        return;
      }
      clearError();
      renderEstimate(data);
      done(mySeq);
      updatePlan(body, mySeq, controller.signal);
    } catch (e) {
      if (e.name === "AbortError") return;
      if (mySeq === seq) {
        showError(`cannot reach the server (${e.message})`, null);
        done(mySeq);
      }
    }
  }

  function done(mySeq) {
    if (mySeq !== seq) return;
    document.body.classList.remove("busy");
    $("results").removeAttribute("aria-busy");
  }

  async function updatePlan(body, mySeq, signal) {
    const box = clear($("plan"));
    if (!health.plan_available) {
      box.append(el("p", { class: "muted" },
        "Alternatives (other engines, quantizations, GPU counts, offload) are not available " +
        "on this server yet."));
      return;
    }
    box.append(el("p", { class: "muted" }, "Searching alternatives…"));
    await new Promise((resolve) => { window.setTimeout(resolve, PLAN_DELAY_MS); });
    if (mySeq !== seq) return; // inputs changed meanwhile: the next update plans
    try {
      const { status, data } = await postJson("/v1/plan", body, signal);
      if (mySeq !== seq) return;
      clear(box);
      if (status === 501) {
        box.append(el("p", { class: "muted" }, data.error || "planning is not available"));
        return;
      }
      if (status !== 200) {
        box.append(el("p", { class: "error-inline" }, data.error || `error ${status}`));
        return;
      }
      renderPlan(box, data);
    } catch (e) {
      if (e.name !== "AbortError" && mySeq === seq) {
        clear(box).append(el("p", { class: "error-inline" }, `plan failed: ${e.message}`));
      }
    }
  }

  // ------------------------------------------------------------ errors

  function showError(message, field) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    for (const input of document.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
    }
    const id = field && (FIELD_FOR_ERROR[field] || (field.startsWith("--") ? "flags" : null));
    if (id && $(id)) {
      $(id).setAttribute("aria-invalid", "true");
      $(id).setAttribute("aria-errormessage", "error");
    }
    const verdict = clear($("verdict"));
    verdict.className = "verdict unknown";
    verdict.append(el("p", { class: "verdict-title", id: "verdict-title" }, "No answer"),
      el("p", { class: "verdict-detail" }, "Fix the input named above."));
    for (const id of ["summary", "devices", "command-box", "plan-section", "explain"]) {
      $(id).classList.add("stale"); // the last answer, for other inputs
    }
    $("mini-verdict").className = "mini-verdict nofit";
    $("mini-verdict").textContent = "No answer: see the error";
  }

  function clearError() {
    for (const node of document.querySelectorAll(".stale")) node.classList.remove("stale");
    $("error").hidden = true;
    $("error").textContent = "";
    for (const input of document.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-errormessage");
    }
  }

  // ------------------------------------------------------------ rendering the estimate

  function renderEstimate(est) {
    renderVerdict(est);
    renderSummary(est);
    renderDevices(est);
    renderExplain(est);
    const cmd = est.command || "";
    $("command").textContent = cmd;
    $("command-box").hidden = !cmd;
  }

  function renderVerdict(est) {
    const v = clear($("verdict"));
    v.className = `verdict ${est.fits ? "fits" : "nofit"}`;
    v.append(el("p", { class: "verdict-title", id: "verdict-title" },
      est.fits ? "Fits" : "Does not fit"));
    const gpuLine = `${est.gpu_count} × ${est.gpu} (tp=${est.tp}, pp=${est.pp}), ` +
      `${est.engine.name} engine`;
    if (est.fits) {
      const gpus = est.devices.filter((d) => d.kind === "gpu");
      const minFree = gpus.length ? Math.min(...gpus.map((d) => d.free_bytes)) : 0;
      v.append(el("p", { class: "verdict-detail" },
        `${est.model.id} on ${gpuLine}: ${fmtBytes(minFree)} free on the fullest GPU.`));
    } else {
      const over = est.devices.filter((d) => !d.fits)
        .map((d) => `${d.name} needs ${fmtBytes(-d.free_bytes)} more`);
      v.append(el("p", { class: "verdict-detail" },
        `${est.model.id} on ${gpuLine}${over.length ? `: ${over.join("; ")}` : ""}.`));
    }
    if (est.failure) {
      v.append(el("p", { class: "failure" }, el("strong", {}, "The engine would fail: "),
        el("code", {}, est.failure)));
    }
    if (est.fix) v.append(el("p", { class: "fix" }, el("strong", {}, "Fix: "), est.fix));
    const worst = est.devices.filter((d) => d.capacity_known !== false)
      .reduce((a, d) => (!a || d.free_bytes < a.free_bytes ? d : a), null);
    const mini = $("mini-verdict");
    mini.className = `mini-verdict ${est.fits ? "fits" : "nofit"}`;
    mini.textContent = `${est.fits ? "Fits" : "Does not fit"}` + (worst ? ` · ${worst.name} ` +
      `${fmtBytes(worst.total_bytes)} of ${fmtBytes(worst.capacity_bytes)}` : "");
    mini.hidden = false;
  }

  function row(dl, term, value, id) {
    dl.append(el("dt", {}, term), el("dd", id ? { id } : {}, value));
  }

  function renderSummary(est) {
    const dl = clear($("summary"));
    const m = est.model;
    row(dl, "Model", `${m.id} (${m.origin}; ${m.model_type})`);
    row(dl, "Parameters", `${fmtCount(m.params_total)} total, ${fmtCount(m.params_active)} ` +
      "active/token");
    row(dl, "Quantization", `${m.quant} [${m.quant_source}]`);
    row(dl, "Weights", `${fmtBytes(est.weights_bytes)} (${fmtBytes(est.weights_bytes, false)})`,
      "weights-total");
    row(dl, "KV cache", `${int(est.kv_cache_bytes_per_token)} B/token (${est.kv_dtype}); ` +
      `context ${int(est.context_tokens)} × batch ${int(est.batch)}`);
    row(dl, "Engine", `${est.engine.name} ${est.engine.version}; ${est.gpu_count} × ${est.gpu} ` +
      `(tp=${est.tp}, pp=${est.pp})`);
    if (est.host_ram_bytes) row(dl, "Host RAM", fmtBytes(est.host_ram_bytes));
    const speed = speedLine(est.speed);
    if (speed) row(dl, "Speed", speed, "speed");
  }

  // vramplan.speed: {decode_tokens_per_s: {value, low, high}, prefill_tokens_per_s, ttft_s,
  // bound_by, assumptions}; the planner gives plain numbers. Either reads the same here.
  function rate(v, unit, digits) {
    const value = v && typeof v === "object" ? v.value : v;
    if (typeof value !== "number") return "";
    const f = (x) => x.toLocaleString("en-US", { minimumFractionDigits: digits,
      maximumFractionDigits: digits });
    let text = `${f(value)} ${unit}`;
    if (v && typeof v === "object" && typeof v.low === "number" && typeof v.high === "number") {
      text += ` (${f(v.low)}–${f(v.high)})`;
    }
    return text;
  }

  function speedLine(sp) {
    if (!sp || typeof sp !== "object") return "";
    const parts = [];
    const dec = rate(sp.decode_tokens_per_s, "tok/s", 1);
    const pre = rate(sp.prefill_tokens_per_s, "tok/s", 0);
    const ttft = rate(sp.ttft_s, "s", 2);
    if (dec) parts.push(`decode ${dec}`);
    if (pre) parts.push(`prefill ${pre}`);
    if (ttft) parts.push(`first token ${ttft}`);
    if (parts.length && sp.bound_by) parts.push(`bound by ${String(sp.bound_by).replace(/_/g, " ")}`);
    return parts.join(" · ");
  }

  function renderDevices(est) {
    const box = clear($("devices"));
    for (const d of est.devices) {
      const scale = Math.max(d.capacity_bytes, d.total_bytes, 1);
      const pct = (n) => `${Math.max(0, (100 * n) / scale).toFixed(3)}%`;
      const parts = CATEGORIES.map(([key, cls, label]) => ({ cls, label, bytes: d[key] || 0 }));
      const summary = `${d.name}: ${fmtBytes(d.total_bytes)} of ${fmtBytes(d.capacity_bytes)}` +
        ` (${parts.map((p) => `${p.label} ${fmtBytes(p.bytes)}`).join(", ")})` +
        `${d.fits ? ", fits" : `, ${fmtBytes(-d.free_bytes)} over`}`;
      const bar = el("div", { class: "bar", role: "img", "aria-label": summary });
      for (const p of parts) {
        if (p.bytes <= 0) continue;
        const seg = el("div", { class: `seg ${p.cls}`, title: `${p.label}: ${fmtBytes(p.bytes)}` });
        seg.style.width = pct(p.bytes);
        bar.append(seg);
      }
      const cap = el("div", { class: "cap", title: `capacity ${fmtBytes(d.capacity_bytes)}` });
      cap.style.left = pct(d.capacity_bytes);
      bar.append(cap);
      const known = d.capacity_known !== false;  // host RAM without a RAM size is not checked
      const status = !known ? "not checked: set RAM" :
        d.fits ? `${fmtBytes(d.free_bytes)} free` : `${fmtBytes(-d.free_bytes)} over`;
      const legend = el("ul", { class: "legend" });
      for (const p of parts) {
        legend.append(el("li", {}, el("span", { class: `swatch ${p.cls}`, "aria-hidden": "true" }),
          `${p.label} `, el("b", {}, fmtBytes(p.bytes))));
      }
      legend.append(el("li", {}, el("span", { class: "swatch capline", "aria-hidden": "true" }),
        "capacity ", el("b", {}, fmtBytes(d.capacity_bytes))));
      const comps = el("details", { class: "components" },
        el("summary", {}, "Components"),
        el("ul", {}, ...d.components.map(componentItem)));
      box.append(el("article", { class: `device ${d.fits ? "fits" : "nofit"}` },
        el("h3", {}, `${d.name} · ${d.label} `,
          el("span", { class: `badge ${d.fits ? "fits" : "nofit"}` }, status)),
        el("p", { class: "device-total" }, known ? `${fmtBytes(d.total_bytes)} of ` +
          `${fmtBytes(d.capacity_bytes)}` : `${fmtBytes(d.total_bytes)} (RAM size not given)`),
        bar, legend, comps));
    }
  }

  function componentItem(c) {
    const li = el("li", {}, el("b", {}, c.name), ` ${fmtBytes(c.bytes)}`,
      c.formula ? el("span", { class: "muted" }, ` = ${c.formula}`) : null,
      c.source ? el("span", { class: "source" }, ` [${c.source}]`) : null);
    if (c.children && c.children.length) li.append(el("ul", {}, ...c.children.map(componentItem)));
    return li;
  }

  function renderExplain(est) {
    const rows = clear($("explain-rows"));
    for (const x of est.explain || []) {
      rows.append(el("tr", {}, el("th", { scope: "row" }, x.term), el("td", {}, x.formula),
        el("td", { class: "num" }, x.value), el("td", { class: "source" }, x.source)));
    }
    const ul = clear($("assumptions"));
    for (const a of est.assumptions || []) ul.append(el("li", {}, a));
    for (const a of (est.speed && est.speed.assumptions) || []) {
      ul.append(el("li", {}, `speed: ${a}`));
    }
    const notes = clear($("notes"));
    for (const n of est.notes || []) notes.append(el("li", {}, n));
    $("notes-box").hidden = !(est.notes && est.notes.length);
  }

  // ------------------------------------------------------------ rendering the plan
  // vramplan.plan's PlanResult: options (ranked PlanOption), suggestions, alternatives
  // (other GPU kinds), rejected, assumptions. Unknown shapes fall back to labels and commands.

  function pick(obj, keys) {
    for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
    return undefined;
  }

  function speedText(speed) {
    if (typeof speed === "number") return `${num(speed)} tok/s`;
    if (!speed || typeof speed !== "object") return "";
    const parts = [];
    for (const [k, v] of Object.entries(speed)) {
      if (typeof v === "number" && /tok|per_s|_s$/.test(k)) {
        parts.push(`${k.replace(/_/g, " ")} ${num(v)}`);
      }
    }
    return parts.join(", ");
  }

  function num(v, digits = 1) {
    return Number.isInteger(v) ? int(v) : Number(v).toFixed(digits);
  }

  function optionTitle(o) {
    const est = o.estimate || {};
    const gpuName = o.gpu_name || o.gpu || est.gpu;
    const count = o.gpu_count || est.gpu_count;
    const par = [o.tp > 1 ? `tp=${o.tp}` : null, o.pp > 1 ? `pp=${o.pp}` : null,
      o.ep || o.expert_parallel ? "ep" : null].filter(Boolean).join(", ");
    return pick(o, ["label", "title"]) || [
      o.engine || (est.engine && est.engine.name),
      o.quant_label || o.quant || (est.model && est.model.quant),
      gpuName ? `${count || 1} × ${gpuName}${par ? ` (${par})` : ""}` : null,
    ].filter(Boolean).join(" · ") || "option";
  }

  function optionSpeed(o) {
    const parts = [];
    const dec = rate(o.decode_tokens_per_s, "tok/s", 1);
    const pre = rate(o.prefill_tokens_per_s, "tok/s", 0);
    const ttft = rate(o.ttft_s, "s", 2);
    if (dec) parts.push(`decode ${dec}`);
    if (pre) parts.push(`prefill ${pre}`);
    if (ttft) parts.push(`first token ${ttft}`);
    if (!parts.length) {
      const other = speedText(pick(o, ["tokens_per_s", "speed"]) || (o.estimate || {}).speed);
      if (other) parts.push(other);
    }
    return parts.join(" · ");
  }

  function optionItem(o) {
    const fits = pick(o, ["fits"]) ?? (o.estimate || {}).fits;
    const facts = [];
    if (o.placement) facts.push(o.placement);
    if (typeof o.max_context_tokens === "number" && o.max_context_tokens > 0) {
      facts.push(`room for ${int(o.max_context_tokens)} tokens of context` +
        (o.max_concurrency > 1 ? `, ${int(o.max_concurrency)} sequences` : ""));
    }
    if (o.host_ram_bytes) facts.push(`${fmtBytes(o.host_ram_bytes)} in host RAM`);
    if (o.binding_detail) facts.push(o.binding_detail);
    const speed = optionSpeed(o);
    const command = pick(o, ["command"]) || (o.estimate || {}).command;
    const notes = [].concat(o.notes || [], pick(o, ["reason", "why"]) || []);
    return el("li", { class: `option ${fits === false ? "nofit" : "fits"}` },
      el("p", { class: "option-title" }, el("b", {}, optionTitle(o)),
        fits === undefined ? null : el("span", { class: `badge ${fits ? "fits" : "nofit"}` },
          fits ? "fits" : "does not fit"),
        o.meets_min_tokens_per_s === false ?
          el("span", { class: "badge nofit" }, "below the speed asked") : null),
      speed ? el("p", { class: "option-speed" }, speed) : null,
      facts.length ? el("p", { class: "muted" }, facts.join("; ")) : null,
      ...notes.map((n) => el("p", { class: "muted" }, String(n))),
      command ? el("pre", {}, el("code", {}, command)) : null);
  }

  function renderPlan(box, data) {
    const options = Array.isArray(data) ? data : (data.options || []);
    if (options.length) {
      box.append(el("ol", { class: "options" }, ...options.map(optionItem)));
    } else {
      box.append(el("p", { class: "muted" }, "No engine, quantization or GPU count fits."));
    }
    const suggestions = data.suggestions || [];
    if (suggestions.length) {
      box.append(el("h3", {}, "What would make it fit"),
        el("ul", { class: "suggestions" }, ...suggestions.map((sg) =>
          el("li", {}, sg.detail || sg.change || String(sg)))));
    }
    const alts = (data.alternatives || []).filter((a) => a && (a.gpu_count || a.reason));
    if (alts.length) {
      box.append(el("h3", {}, "Other GPUs"), el("ul", { class: "alternatives" },
        ...alts.map((a) => el("li", {},
          el("b", {}, a.gpu_count ? `${a.gpu_count} × ${a.gpu_name || a.gpu}` : (a.gpu_name || a.gpu)),
          a.option ? ` · ${optionTitle(a.option).split(" · ").slice(0, 2).join(" · ")}` : "",
          a.option && optionSpeed(a.option) ? ` · ${optionSpeed(a.option)}` : "",
          a.reason ? el("span", { class: "muted" }, ` (${a.reason})`) : null))));
    }
    const rejected = data.rejected || [];
    if (rejected.length) {
      box.append(el("details", { class: "rejected" },
        el("summary", {}, `Ruled out (${rejected.length})`),
        el("ul", {}, ...rejected.map((r) => el("li", {},
          el("b", {}, [r.engine, r.setup].filter(Boolean).join(": ")), ` ${r.reason || ""}`)))));
    }
    if (data.assumptions && data.assumptions.length) {
      box.append(el("details", { class: "rejected" }, el("summary", {}, "Plan assumptions"),
        el("ul", {}, ...data.assumptions.map((a) => el("li", {}, a)))));
    }
    if (typeof data.elapsed_s === "number") {
      box.append(el("p", { class: "muted small" }, `searched in ${num(data.elapsed_s, 2)} s`));
    }
  }

  // ------------------------------------------------------------ start

  async function loadLists() {
    const [h, models, gpus] = await Promise.all([
      fetch("/v1/health").then((r) => r.json()).catch(() => null),
      fetch("/v1/models").then((r) => r.json()).catch(() => ({ models: [] })),
      fetch("/v1/gpus").then((r) => r.json()).catch(() => ({ gpus: [] })),
    ]);
    if (h) {
      health = h;
      $("version").textContent = h.version || "";
      for (const opt of $("engine").options) {
        if (opt.value !== "auto" && h.engines && !h.engines.includes(opt.value)) {
          opt.textContent = `${opt.textContent.replace(/ \(not in this build\)$/, "")} (not in this build)`;
        }
      }
      const ql = clear($("quant-list"));
      for (const q of h.quant_choices || []) ql.append(el("option", { value: q }));
      if (h.allow_hub === false) {
        $("model-hint").textContent = "A built-in model (type to search), or paste a config.json " +
          "below. This server does not fetch from the Hugging Face Hub.";
      }
    }
    const ml = clear($("model-list"));
    for (const m of models.models || []) {
      ml.append(el("option", { value: m.id, label: `${m.aliases.join(", ")} · ${m.params}` }));
    }
    const gl = clear($("gpu-list"));
    for (const g of gpus.gpus || []) {
      gl.append(el("option", { value: g.name, label: `${g.key} · ${fmtBytes(g.memory_bytes)}` }));
    }
  }

  function init() {
    loadStateFromUrl();
    const form = $("inputs");
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    form.addEventListener("submit", (e) => { e.preventDefault(); update(); });
    window.addEventListener("popstate", () => { loadStateFromUrl(); update(); });
    $("copy-link").addEventListener("click", async () => {
      const href = new URL($("share").getAttribute("href"), window.location.href).href;
      try {
        await navigator.clipboard.writeText(href);
        $("copied").textContent = "copied";
      } catch (e) {
        $("copied").textContent = href;
      }
    });
    loadLists().finally(update);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();

  window.vramplan = { fmtBytes, fmtCount }; // for tests and the console
})();
