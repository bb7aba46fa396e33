// stylelab serve: the page. Plain JavaScript, no build step, nothing loaded from the network.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const MAIN_FIELDS = ["preset", "size", "steps", "style_weight", "content_weight", "style_loss", "init", "seed"];
const HIDDEN_FIELDS = ["style_blend"]; // set from the weights next to each style image
const FORM_KEY = "stylelab.form"; // localStorage: the form as last typed, restored on load
const state = { fields: [], content: null, styles: [], following: null, source: null, points: [], runningJob: null,
                initImage: null, stopping: null, explaining: new Set() };

// ------------------------------------------------------------------------------------------------ requests

function url(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["X-Stylelab-Token"] = token;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.field = body && body.field; // a refused setting: the form field to mark
    throw error;
  }
  return body;
}

// The banner, and the field the message is about (if any) marked: red outline, aria-invalid, the message under it.
function showError(message, field = null) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  clearFieldError();
  if (field) markField(field, message);
}

async function guarded(fn) {
  try { showError(""); return await fn(); } catch (e) { showError(e.message, e.field); return null; }
}

function fieldInputs(name) {
  if (name === "style_blend") return [...document.querySelectorAll("#styles input[type=number]")]; // the weights
  const input = $("f-" + name);
  return input ? [input] : [];
}

function markField(name, message) {
  const inputs = fieldInputs(name);
  if (!inputs.length) return;
  const f = state.fields.find((x) => x.name === name);
  const prefix = f ? f.label + ": " : "";
  const note = document.createElement("div");
  note.className = "field-error";
  note.id = "error-" + name;
  note.textContent = prefix && message.startsWith(prefix) ? message.slice(prefix.length) : message;
  for (const input of inputs) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", note.id);
  }
  const first = inputs[0];
  (first.closest(".field") || first.closest("li") || first.parentElement).appendChild(note);
  const more = first.closest("details");
  if (more) more.open = true; // the field may be under "More settings"
  first.focus();
}

function clearFieldError() {
  for (const input of document.querySelectorAll("[aria-invalid=true]")) {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
  for (const note of document.querySelectorAll(".field-error")) note.remove();
}

// ------------------------------------------------------------------------------------------------- the form

function fieldInput(f) {
  let input;
  if (f.kind === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = !!f.default;
  } else if (f.choices) {
    input = document.createElement("select");
    if (f.default === null || f.default === undefined) {  // an optional choice (--preset): none by default
      const o = document.createElement("option");
      o.value = ""; o.textContent = "(none)";
      input.appendChild(o);
    }
    for (const c of f.choices) {
      const o = document.createElement("option");
      o.value = String(c); o.textContent = String(c);
      input.appendChild(o);
    }
    input.value = f.default === null || f.default === undefined ? "" : String(f.default);
  } else {
    input = document.createElement("input");
    input.type = "text";
    if (f.kind !== "str") input.inputMode = "decimal";
    input.value = f.default === null || f.default === undefined ? "" : String(f.default);
    input.placeholder = f.metavar || (f.default === null ? "(default)" : "");
  }
  input.id = "f-" + f.name;
  input.name = f.name;
  return input;
}

function renderForm(fields) {
  const form = $("form");
  form.innerHTML = "";
  const more = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "More settings";
  more.appendChild(summary);
  const ordered = MAIN_FIELDS.map((n) => fields.find((f) => f.name === n)).filter(Boolean)
    .concat(fields.filter((f) => !MAIN_FIELDS.includes(f.name)));
  for (const f of ordered) {
    if (HIDDEN_FIELDS.includes(f.name)) continue;
    const div = document.createElement("div");
    div.className = "field";
    const label = document.createElement("label");
    label.htmlFor = "f-" + f.name;
    label.textContent = f.label + " ";
    const flag = document.createElement("code");
    flag.textContent = f.flag;
    label.appendChild(flag);
    const input = fieldInput(f);
    if (f.name === "preset") {
      input.addEventListener("change", () => { switchPreset(input.dataset.previous || "", input.value); notePreset(); });
    }
    if (f.kind === "bool") { label.prepend(input); div.appendChild(label); } else { div.append(label, input); }
    if (f.name === "init") div.appendChild(initPicker());
    const help = document.createElement("div");
    help.className = "help";
    help.textContent = f.help;
    div.appendChild(help);
    (MAIN_FIELDS.includes(f.name) ? form : more).appendChild(div);
  }
  form.appendChild(more);
  const reset = button("Defaults", () => { applySettings({}); clearFieldError(); }, "every setting back to its default");
  reset.type = "button";
  reset.className = "small";
  form.appendChild(reset);
  form.addEventListener("input", saveForm);
  form.addEventListener("change", saveForm);
  form.addEventListener("input", (e) => { // an edited field is no longer the one in error
    if (e.target.getAttribute("aria-invalid") === "true") clearFieldError();
  });
}

// The form as typed, kept across reloads (localStorage; nothing leaves the browser).
function formValues() {
  const values = {};
  for (const f of state.fields) {
    const input = $("f-" + f.name);
    if (input) values[f.name] = f.kind === "bool" ? input.checked : input.value;
  }
  return values;
}

function saveForm() {
  try { localStorage.setItem(FORM_KEY, JSON.stringify(formValues())); } catch (e) { /* storage off: not kept */ }
}

function restoreForm() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(FORM_KEY) || "{}") || {}; } catch (e) { saved = {}; }
  for (const f of state.fields) {
    const input = $("f-" + f.name);
    if (!input || !(f.name in saved)) continue;
    if (f.kind === "bool") input.checked = !!saved[f.name];
    else if (input.tagName !== "SELECT" || [...input.options].some((o) => o.value === String(saved[f.name]))) {
      input.value = String(saved[f.name]);
    }
  }
  notePreset();
}

// The preset the fields now show, so that choosing another one knows which values were its.
function notePreset() {
  const preset = $("f-preset");
  if (preset) preset.dataset.previous = preset.value;
}

// --init PATH as an upload: "or an image…" next to the named choices; while one is set, it is the start.
function initPicker() {
  const row = document.createElement("div");
  row.id = "init-image";
  row.className = "mask-row";
  const pick = document.createElement("input");
  pick.type = "file"; pick.accept = "image/*"; pick.hidden = true; pick.id = "init-file";
  pick.addEventListener("change", () => guarded(async () => {
    if (pick.files.length) setInitImage(await uploadFile(pick.files[0]));
    pick.value = "";
  }));
  const b = button("or an image…", () => pick.click(), "start from an image of yours (the content is still the content)");
  b.className = "small";
  const thumb = document.createElement("img");
  thumb.id = "init-thumb"; thumb.className = "mask-thumb"; thumb.alt = "start image"; thumb.hidden = true;
  const clear = button("×", () => setInitImage(null), "no start image");
  clear.className = "small"; clear.id = "init-clear"; clear.hidden = true;
  row.append(pick, b, thumb, clear);
  return row;
}

function setInitImage(upload) {
  state.initImage = upload;
  $("init-thumb").hidden = $("init-clear").hidden = !upload;
  if (upload) $("init-thumb").src = url(`/api/uploads/${upload.sha256}/image`);
  $("f-init").disabled = !!upload;
}

// The values a preset sets ({} for none), from the schema: the form shows them once the preset is chosen.
function presetValues(name) {
  const field = state.fields.find((f) => f.name === "preset");
  return (name && field && field.presets && field.presets[name]) || {};
}

// A field's value in the form as shown before any change: the preset's, else stylelab's default.
function baseline(f, preset) {
  const p = presetValues(preset);
  const v = f.name in p ? p[f.name] : f.default;
  return f.kind === "bool" ? !!v : (v === null || v === undefined ? "" : String(v));
}

// Choosing another preset: each field still showing the old preset's value (or the default) shows the new one's.
function switchPreset(from, to) {
  for (const f of state.fields) {
    const input = $("f-" + f.name);
    if (!input || f.name === "preset" || HIDDEN_FIELDS.includes(f.name)) continue;
    const value = f.kind === "bool" ? input.checked : input.value.trim();
    if (value !== baseline(f, from)) continue; // the user's own value stays
    if (f.kind === "bool") input.checked = baseline(f, to); else input.value = baseline(f, to);
  }
}

// What the user set: the fields that differ from the form as shown (the preset's values, else the defaults).
function readSettings() {
  const settings = {};
  const preset = $("f-preset") ? $("f-preset").value : "";
  for (const f of state.fields) {
    if (HIDDEN_FIELDS.includes(f.name)) continue;
    const input = $("f-" + f.name);
    const value = f.kind === "bool" ? input.checked : input.value.trim();
    if (value !== baseline(f, preset)) settings[f.name] = value === "" ? null : value;
  }
  const weights = state.styles.map((s) => s.weight);
  if (weights.length > 1 && weights.some((w) => w !== weights[0])) settings.style_blend = weights.join(",");
  return settings;
}

function applySettings(settings) {
  for (const f of state.fields) {
    if (HIDDEN_FIELDS.includes(f.name)) continue;
    const input = $("f-" + f.name);
    const v = f.name in settings ? settings[f.name] : baseline(f, settings.preset);
    if (f.kind === "bool") input.checked = !!v;
    else input.value = v === null || v === undefined ? "" : String(v);
  }
  notePreset();
  saveForm();
}

// ---------------------------------------------------------------------------------------------- the inputs

async function uploadFile(file) {
  const data = new FormData();
  data.append("file", file, file.name);
  return api("/api/uploads", { method: "POST", body: data });
}

function setContent(upload) {
  state.content = upload;
  const img = $("content-thumb");
  if (upload) {
    img.src = url(`/api/uploads/${upload.sha256}/image`);
    img.hidden = false;
    $("content-hint").textContent = `${upload.name} (${upload.width}x${upload.height})`;
  } else {
    img.hidden = true;
    $("content-hint").textContent = "drop an image or click to pick";
  }
}

function addStyle(upload, weight = 1) {
  if (state.styles.some((s) => s.sha256 === upload.sha256)) return;
  state.styles.push(Object.assign({}, upload, { weight }));
  renderStyles();
}

function renderStyles() {
  const list = $("styles");
  list.innerHTML = "";
  state.styles.forEach((s, k) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = url(`/api/uploads/${s.sha256}/image`);
    img.alt = s.name;
    const w = document.createElement("input");
    w.type = "number"; w.min = "0"; w.step = "0.1"; w.value = String(s.weight);
    w.title = "blend weight";
    w.addEventListener("input", () => {
      state.styles[k].weight = parseFloat(w.value) || 0;
      if (w.getAttribute("aria-invalid") === "true") clearFieldError();
    });
    const x = document.createElement("button");
    x.textContent = "×"; x.title = "remove";
    x.addEventListener("click", () => { state.styles.splice(k, 1); renderStyles(); });
    const name = document.createElement("span");
    name.textContent = "weight";
    name.className = "hint";
    const row = document.createElement("div");
    row.className = "style-row";
    row.append(img, name, w, x);
    li.append(row, maskRow(s));
    list.appendChild(li);
  });
}

// A region (`--mask`) for a style: where in the output it goes (white = here), optionally from where in the style.
function maskRow(s) {
  const row = document.createElement("div");
  row.className = "mask-row";
  for (const [key, label, title] of [
    ["mask", "region…", "a mask of the content: where this style goes (white), the rest takes the other regions"],
    ["styleMask", "from…", "optional: a mask of this style image, the part its statistics come from"]]) {
    const pick = document.createElement("input");
    pick.type = "file"; pick.accept = "image/*"; pick.hidden = true;
    pick.className = "mask-file-" + key;
    pick.addEventListener("change", () => guarded(async () => {
      if (!pick.files.length) return;
      const upload = await uploadFile(pick.files[0]);
      const target = state.styles.find((x) => x.sha256 === s.sha256); // by image: the list may change meanwhile
      if (target) { target[key] = upload; renderStyles(); }
    }));
    const b = button(s[key] ? label.replace("…", "") + " ✓" : label, () => pick.click(), title);
    b.className = "small mask-" + key;
    row.append(pick, b);
    if (s[key]) {
      const thumb = document.createElement("img");
      thumb.src = url(`/api/uploads/${s[key].sha256}/image`);
      thumb.alt = key === "mask" ? "region mask" : "style mask";
      thumb.className = "mask-thumb";
      const clear = button("×", () => { delete s[key]; renderStyles(); }, "no " + label.replace("…", ""));
      clear.className = "small";
      row.append(thumb, clear);
    }
  }
  return row;
}

function wireDrop(zone, fileInput, onFiles) {
  zone.addEventListener("click", () => fileInput.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") fileInput.click(); });
  fileInput.addEventListener("change", () => { onFiles([...fileInput.files]); fileInput.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    onFiles([...e.dataTransfer.files]);
  });
}

async function refreshRecent() {
  const uploads = await api("/api/uploads");
  const box = $("recent");
  const signature = uploads.map((u) => u.sha256).join();
  if (box.dataset.signature === signature) return;
  box.dataset.signature = signature;
  box.innerHTML = "";
  for (const u of uploads) {
    const img = document.createElement("img");
    img.src = url(`/api/uploads/${u.sha256}/image`);
    img.title = `${u.name} ${u.width}x${u.height}`;
    img.addEventListener("click", (e) => { if (e.shiftKey) addStyle(u); else setContent(u); });
    box.appendChild(img);
  }
}

// ------------------------------------------------------------------------------------------- running a job

function fmtSeconds(s) {
  if (!isFinite(s)) return "–";
  if (s < 60) return s.toFixed(1) + " s";
  return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}

function follow(jobId) {
  if (state.source) state.source.close();
  state.following = jobId;
  state.stopping = null;
  state.points = [];
  drawPlot();
  $("preview-note").hidden = true;
  const source = new EventSource(url(`/api/jobs/${jobId}/events`));
  state.source = source;
  $("stats").textContent = `job ${jobId}: waiting in the queue`;
  setButtons(true);
  source.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    if (e.type === "state" && e.state === "running") $("stats").textContent = `job ${jobId}: preparing`;
    if (e.type === "state" && e.state === "stopping") stopping(jobId);
    if (e.type === "step" && !e.final) {
      state.points.push(e.terms);
      $("bar").style.width = (100 * e.step / e.total).toFixed(1) + "%";
      const t = e.terms;
      if (state.stopping !== jobId) {
        $("stats").textContent = `job ${jobId} · step ${e.step}/${e.total} · ${e.size[0]}x${e.size[1]} px · ` +
          `${e.seconds.toFixed(2)} s/step · ${fmtSeconds(e.elapsed)} elapsed · ETA ${fmtSeconds(e.eta)} · ` +
          `content ${t.content.toFixed(3)} style ${t.style.toFixed(4)}`;
      }
      drawPlot();
    }
    if (e.type === "tile" && state.stopping !== jobId) {  // inside a step computed in tiles (print sizes)
      const what = e.phase === "targets" ? "targets" : `step ${e.step + 1}/${e.total}`;
      $("stats").textContent = `job ${jobId} · ${what} in tiles: sweep ${e.sweep}/${e.sweeps}, tile ` +
        `${e.tile}/${e.tiles} · ${e.eta === null ? "?" : fmtSeconds(e.eta)} left in this ` +
        `${e.phase === "targets" ? "phase" : "step"} · ${fmtSeconds(e.elapsed)} elapsed`;
    }
    if (e.type === "preview") {
      const img = $("preview");
      img.src = url(`/api/jobs/${jobId}/preview?n=${e.n}`);
      img.hidden = false;
      $("placeholder").hidden = true;
      $("preview-note").hidden = !e.fast;  // the feed-forward picture, until the optimiser's first preview
    }
    if (e.type === "end") {
      $("preview-note").hidden = true;
      source.close();
      state.source = null;
      state.stopping = null;
      const what = { done: "done", failed: "failed: " + (e.error || ""), cancelled: "cancelled" }[e.state];
      $("stats").textContent = `job ${jobId} ${what}`;
      if (e.state === "done") {
        $("bar").style.width = "100%";
        $("preview").src = url(`/api/jobs/${jobId}/result?t=${Date.now()}`);
      }
      if (e.state === "failed") showError(`job ${jobId} failed: ${e.error}`);
      setButtons(false);
      refresh();
    }
  };
}

// A Cancel is heard at once; the job stops at the end of the step it is taking (a step can take seconds).
function stopping(jobId) {
  if (state.following !== jobId) return;
  state.stopping = jobId;
  $("cancel").disabled = true;
  $("stats").textContent = `job ${jobId}: stopping after this step…`;
}

function setButtons(active) {
  $("cancel").disabled = !active || (state.stopping !== null && state.stopping === state.following);
  $("continue").disabled = state.following === null;
  $("restart").disabled = state.following === null;
}

const PLOT_COLORS = { content: "#2b6cb0", style: "#b4462b", tv: "#3a7d44" };

// The y axis of the log plot: [lo, hi] widened to round values, and the ticks to label. Over a decade or more:
// whole decades, ticks at powers of ten (every second or third one when there are many); within one: 1-2-5 steps.
function logAxis(min, max) {
  if (max / min >= 10) {
    const lo = Math.floor(Math.log10(min) + 1e-9), hi = Math.ceil(Math.log10(max) - 1e-9);
    const every = Math.ceil((hi - lo) / 5);
    const ticks = [];
    for (let k = lo; k <= hi; k++) if (k % every === 0) ticks.push(Math.pow(10, k));
    return { lo: Math.pow(10, lo), hi: Math.pow(10, hi), ticks };
  }
  const steps = []; // the 1-2-5 values from below min to above max
  for (let k = Math.floor(Math.log10(min)) - 1; k <= Math.ceil(Math.log10(max)) + 1; k++) {
    for (const m of [1, 2, 5]) steps.push(m * Math.pow(10, k));
  }
  const below = steps.filter((v) => v <= min * (1 + 1e-9)), above = steps.filter((v) => v >= max * (1 - 1e-9));
  let lo = below[below.length - 1], hi = above[0];
  if (lo === hi) { lo = below[below.length - 2]; hi = above[1]; } // one value, on a round number
  return { lo, hi, ticks: steps.filter((v) => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) };
}

// 1, 0.1, 0.02, 500, 2e-5, 1e6: plain from 0.001 to 9999, else m·10^k written as "me-k".
function tickLabel(v) {
  const k = Math.floor(Math.log10(v) + 1e-9), m = Math.round(v / Math.pow(10, k));
  if (k >= -3 && k <= 3) return String(Number((m * Math.pow(10, k)).toPrecision(1)));
  return `${m}e${k}`;
}

function drawPlot() {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const w = canvas.clientWidth || 560, h = canvas.clientHeight || 150, pad = 28, dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) { // sharp at its CSS size
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  const keys = Object.keys(PLOT_COLORS).filter((k) => state.points.some((p) => p[k] > 0));
  const values = state.points.flatMap((p) => keys.map((k) => p[k]).filter((v) => v > 0));
  if (!values.length) {
    ctx.fillStyle = "#999";
    ctx.fillText("loss terms (log scale) appear here while a job runs", pad, h / 2);
    return;
  }
  const axis = logAxis(Math.min(...values), Math.max(...values));
  const lo = Math.log10(axis.lo), hi = Math.log10(axis.hi);
  const left = 40; // room for the tick labels
  const n = Math.max(2, state.points.length);
  const x = (i) => left + (w - left - pad) * i / (n - 1);
  const y = (v) => h - pad / 2 - (h - pad) * (Math.log10(v) - lo) / (hi - lo);
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of axis.ticks) {
    ctx.strokeStyle = "#eee";
    ctx.beginPath(); ctx.moveTo(left, y(t)); ctx.lineTo(w - pad, y(t)); ctx.stroke();
    ctx.fillStyle = "#777";
    ctx.fillText(tickLabel(t), left - 4, y(t));
  }
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  ctx.strokeStyle = "#ccc";
  ctx.beginPath(); ctx.moveTo(left, pad / 2); ctx.lineTo(left, h - pad / 2); ctx.lineTo(w - pad, h - pad / 2); ctx.stroke();
  keys.forEach((k, j) => {
    ctx.strokeStyle = PLOT_COLORS[k];
    ctx.lineWidth = 2;
    ctx.beginPath();
    state.points.forEach((p, i) => { if (p[k] > 0) { if (i === 0) ctx.moveTo(x(i), y(p[k])); else ctx.lineTo(x(i), y(p[k])); } });
    ctx.stroke();
    ctx.fillStyle = PLOT_COLORS[k];
    ctx.fillText(k, w - pad - 160 + 55 * j, 12);
  });
}

function jobBody() {
  const texture = $("texture").checked;
  if (!texture && !state.content) throw new Error("pick a content image (or tick texture)");
  if (!state.styles.length) throw new Error("add at least one style image");
  const masks = state.styles.map((s, k) => s.mask ? { content_mask: s.mask.sha256, style: k + 1,
    style_mask: s.styleMask ? s.styleMask.sha256 : null } : null).filter(Boolean);
  if (texture && masks.length) throw new Error("masks need a content image; untick texture or remove the regions");
  if (state.styles.some((s) => s.styleMask && !s.mask)) {
    throw new Error("a style mask (from…) needs a region (region…) for the same style");
  }
  return { content: texture ? null : state.content.sha256, styles: state.styles.map((s) => s.sha256),
           settings: readSettings(), masks, init: state.initImage ? state.initImage.sha256 : null };
}

async function start() {
  await guarded(async () => {
    const job = await api("/api/jobs", { method: "POST", json: jobBody() });
    if (state.source === null) follow(job.id);
    refresh();
  });
}

async function steer(action) {
  if (state.following === null) return;
  const jobId = state.following;
  if (action === "cancel") stopping(jobId); // before the request: the click shows at once
  const done = await guarded(async () => {
    const body = action === "cancel" ? undefined : { settings: readSettings() };
    const job = await api(`/api/jobs/${jobId}/${action}`, { method: "POST", json: body });
    if (action !== "cancel") follow(job.id);
    refresh();
    return true;
  });
  if (!done && action === "cancel" && state.stopping === jobId) { // not heard: the button back
    state.stopping = null;
    setButtons(state.source !== null);
  }
}

// ----------------------------------------------------------------------------------------- queue, gallery

function summary(settings) {
  const s = Object.entries(settings).filter(([k, v]) => {
    const f = state.fields.find((x) => x.name === k);
    return f && v !== f.default;
  });
  return s.map(([k, v]) => `${k}=${v}`).join(" ") || "defaults";
}

async function refresh() {
  const data = await api("/api/jobs");
  const queue = $("queue");
  queue.innerHTML = "";
  const active = data.jobs.filter((j) => j.state === "queued" || j.state === "running")
    .sort((a, b) => data.queue.indexOf(a.id) - data.queue.indexOf(b.id));
  for (const j of active) {
    const li = document.createElement("li");
    li.textContent = `#${j.id} ${j.state} · ${j.kind} · ${summary(j.settings)}`;
    queue.appendChild(li);
  }
  if (!active.length) queue.innerHTML = "<li>empty</li>";
  $("status").textContent = [data.running !== null ? `running job ${data.running}` : "idle",
    ...[...state.explaining].map((id) => `building the report of job ${id}…`)].join(" · ");
  if (data.running !== null && state.source === null && data.running !== state.following) follow(data.running);
  renderGallery(data.jobs.filter((j) => j.state !== "queued" && j.state !== "running"));
  refreshRecent().catch(() => {});
}

function button(text, onClick, title = "") {
  const b = document.createElement("button");
  b.textContent = text; b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function renderGallery(jobs) {
  const box = $("gallery");
  const signature = JSON.stringify(jobs.map((j) => [j.id, j.state, j.result, j.steps]));
  if (box.dataset.signature === signature) return; // unchanged: keep the cards (and their images) as they are
  box.dataset.signature = signature;
  box.innerHTML = "";
  for (const j of jobs) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.job = j.id;
    card.dataset.state = j.state;
    if (j.result) {
      const img = document.createElement("img");
      img.src = url(`/api/jobs/${j.id}/result`);
      img.alt = `result of job ${j.id}`;
      card.appendChild(img);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const st = document.createElement("span");
    st.className = "state-" + j.state;
    st.textContent = j.state + (j.error ? ": " + j.error : "");
    meta.append(`#${j.id} ${j.kind}${j.parent ? " (from #" + j.parent + ")" : ""} · ${j.steps} steps · `, st,
                document.createElement("br"), summary(j.settings));
    card.appendChild(meta);
    const actions = document.createElement("div");
    actions.className = "actions";
    if (j.result) {
      const a = document.createElement("a");
      a.href = url(`/api/jobs/${j.id}/result?download=true`);
      a.textContent = "Download";
      actions.appendChild(a);
      actions.appendChild(button("Settings", () => guarded(async () => {
        const record = await api(`/api/jobs/${j.id}/provenance`);
        $("details-text").textContent = JSON.stringify(record, null, 2);
        $("details").showModal();
      }), "the settings embedded in the PNG (what `stylelab replay` reads)"));
    }
    if (j.result && j.kind === "run") {
      const b = button("Explain", () => explain(j.id),
        "stylelab explain: Gram matrices, moments and distances of this result");
      b.className = "explain";
      actions.appendChild(b);
      actions.appendChild(button("Compare", () => openCompare(j),
        "stylelab compare: this job under other style losses, side by side and measured under each"));
    }
    actions.appendChild(button("Replay", () => guarded(async () => {
      const job = await api(`/api/jobs/${j.id}/restart`, { method: "POST", json: {} });
      if (state.source === null) follow(job.id);
      refresh();
    }), "run this job again with its own inputs and settings (what stylelab replay does)"));
    actions.appendChild(button("Run again with changes", () => guarded(async () => {
      applySettings(j.settings);
      const uploads = await api("/api/uploads");
      const known = Object.fromEntries(uploads.map((u) => [u.sha256, u]));
      // The list holds the newest uploads only; an older one is still served by its id.
      const bySha = new Proxy(known, { get: (o, sha) => o[sha] || { sha256: sha, name: "earlier upload",
                                                                       width: "?", height: "?" } });
      $("texture").checked = j.content === null;
      setContent(j.content ? bySha[j.content] || null : null);
      state.styles = [];
      const blend = (j.settings.style_blend || "").split(",").map(parseFloat);
      j.styles.forEach((s, k) => { if (bySha[s]) addStyle(bySha[s], blend[k] || 1); });
      for (const m of j.masks || []) { // the form holds one region per style (the API takes several)
        const target = state.styles.find((s) => s.sha256 === j.styles[m.style - 1]);
        if (target) target.mask = bySha[m.content_mask];
        if (target && m.style_mask) target.styleMask = bySha[m.style_mask];
      }
      renderStyles();
      state.following = j.id;
      setButtons(state.source !== null);
      window.scrollTo({ top: 0, behavior: "smooth" });
    }), "load this job's inputs and settings into the form"));
    actions.appendChild(button("Delete", () => guarded(async () => {
      await api(`/api/jobs/${j.id}`, { method: "DELETE" });
      refresh();
    })));
    card.appendChild(actions);
    box.appendChild(card);
    showExplaining(j.id);
  }
  if (!jobs.length) box.innerHTML = "<p class='hint'>finished jobs appear here, with their settings</p>";
}

// Explain takes from seconds to a minute: the button says so meanwhile, and the report's tab opens at the click
// (a tab opened when the answer comes, long after the click, is a pop-up browsers block).
async function explain(jobId) {
  if (state.explaining.has(jobId)) return;
  const tab = window.open("", "_blank");
  if (tab) {
    tab.document.title = `stylelab: explaining job ${jobId}`;
    tab.document.body.textContent = `Building the report of job ${jobId}… (this tab shows it when it is ready)`;
  }
  state.explaining.add(jobId);
  showExplaining(jobId);
  $("status").textContent = `building the report of job ${jobId}…`;
  try {
    showError("");
    const r = await api(`/api/jobs/${jobId}/explain`, { method: "POST" });
    if (tab && !tab.closed) tab.location.href = url(r.report);
    else window.open(url(r.report), "_blank");
  } catch (e) {
    if (tab) tab.close();
    showError(e.message, e.field);
  } finally {
    state.explaining.delete(jobId);
    showExplaining(jobId);
    refresh().catch(() => {});
  }
}

function showExplaining(jobId) {
  const b = document.querySelector(`.card[data-job="${jobId}"] button.explain`);
  if (!b) return;
  const busy = state.explaining.has(jobId);
  b.disabled = busy;
  b.textContent = busy ? "Building the report…" : "Explain";
}

function openCompare(j) {
  const dialog = $("compare");
  dialog.dataset.job = j.id;
  $("compare-title").textContent = `Compare job ${j.id} (style loss ${j.settings.style_loss}) with other losses`;
  $("compare-status").textContent = "";
  dialog.showModal();
}

// Errors of the compare dialog show in the dialog (the page's error box is behind it).
async function compareQueue() {
  const id = $("compare").dataset.job;
  try {
    const r = await api(`/api/jobs/${id}/compare`, { method: "POST", json: { losses: $("compare-losses").value } });
    $("compare-status").textContent = r.jobs.length
      ? `queued jobs ${r.jobs.map((x) => "#" + x.id).join(", ")}; show the report when they are done`
      : "nothing to queue: those losses are this job's own or already compared";
    if (r.jobs.length && state.source === null) follow(r.jobs[0].id);
    refresh();
  } catch (e) { $("compare-status").textContent = e.message; }
}

async function compareReport() {
  const id = $("compare").dataset.job;
  $("compare-status").textContent = "measuring the results...";
  try {
    const r = await api(`/api/jobs/${id}/compare-report`, { method: "POST" });
    $("compare-status").textContent = "";
    window.open(url(r.report), "_blank");
  } catch (e) { $("compare-status").textContent = e.message; }
}

// ------------------------------------------------------------------------------------------------- start-up

async function init() {
  const schema = await guarded(() => api("/api/schema"));
  if (!schema) return;
  state.fields = schema.fields;
  renderForm(schema.fields);
  restoreForm();
  wireDrop($("content-drop"), $("content-file"), async (files) => {
    if (files.length) await guarded(async () => setContent(await uploadFile(files[0])));
    refreshRecent().catch(() => {});
  });
  wireDrop($("style-drop"), $("style-file"), async (files) => {
    for (const f of files) await guarded(async () => addStyle(await uploadFile(f)));
    refreshRecent().catch(() => {});
  });
  $("texture").addEventListener("change", () => {
    $("content-drop").classList.toggle("disabled", $("texture").checked);
  });
  $("start").addEventListener("click", start);
  $("cancel").addEventListener("click", () => steer("cancel"));
  $("continue").addEventListener("click", () => steer("continue"));
  $("restart").addEventListener("click", () => steer("restart"));
  $("compare-queue").addEventListener("click", compareQueue);
  $("compare-report").addEventListener("click", compareReport);
  drawPlot();
  await guarded(refresh);
  setInterval(() => refresh().catch((e) => showError(e.message)), 2000);
}

init();
