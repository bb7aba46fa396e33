// stylelab serve: the page. Plain JavaScript, no build step, nothing loaded from the network.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const MAIN_FIELDS = ["size", "steps", "style_weight", "content_weight", "style_loss", "init", "seed"];
const HIDDEN_FIELDS = ["style_blend"]; // set from the weights next to each style image
const state = { fields: [], content: null, styles: [], following: null, source: null, points: [], runningJob: null,
                initImage: null };

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
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function guarded(fn) {
  try { showError(""); return await fn(); } catch (e) { showError(e.message); return null; }
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
    for (const c of f.choices) {
      const o = document.createElement("option");
      o.value = String(c); o.textContent = String(c);
      input.appendChild(o);
    }
    input.value = String(f.default);
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
    label.textContent = f.name.replace(/_/g, " ") + " ";
    const flag = document.createElement("code");
    flag.textContent = f.flag;
    label.appendChild(flag);
    const input = fieldInput(f);
    if (f.kind === "bool") { label.prepend(input); div.appendChild(label); } else { div.append(label, input); }
    if (f.name === "init") div.appendChild(initPicker());
    const help = document.createElement("div");
    help.className = "help";
    help.textContent = f.help;
    div.appendChild(help);
    (MAIN_FIELDS.includes(f.name) ? form : more).appendChild(div);
  }
  form.appendChild(more);
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

function readSettings() {
  const settings = {};
  for (const f of state.fields) {
    if (HIDDEN_FIELDS.includes(f.name)) continue;
    const input = $("f-" + f.name);
    const value = f.kind === "bool" ? input.checked : input.value.trim();
    const dflt = f.kind === "bool" ? !!f.default : (f.default === null ? "" : String(f.default));
    if (value !== dflt) settings[f.name] = value === "" ? null : value;
  }
  const weights = state.styles.map((s) => s.weight);
  if (weights.length > 1 && weights.some((w) => w !== weights[0])) settings.style_blend = weights.join(",");
  return settings;
}

function applySettings(settings) {
  for (const f of state.fields) {
    if (HIDDEN_FIELDS.includes(f.name)) continue;
    const input = $("f-" + f.name);
    const v = f.name in settings ? settings[f.name] : f.default;
    if (f.kind === "bool") input.checked = !!v;
    else input.value = v === null || v === undefined ? "" : String(v);
  }
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
    w.addEventListener("input", () => { state.styles[k].weight = parseFloat(w.value) || 0; });
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
  state.points = [];
  drawPlot();
  const source = new EventSource(url(`/api/jobs/${jobId}/events`));
  state.source = source;
  $("stats").textContent = `job ${jobId}: waiting in the queue`;
  setButtons(true);
  source.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    if (e.type === "state" && e.state === "running") $("stats").textContent = `job ${jobId}: preparing`;
    if (e.type === "step" && !e.final) {
      state.points.push(e.terms);
      $("bar").style.width = (100 * e.step / e.total).toFixed(1) + "%";
      const t = e.terms;
      $("stats").textContent = `job ${jobId} · step ${e.step}/${e.total} · ${e.size[0]}x${e.size[1]} px · ` +
        `${e.seconds.toFixed(2)} s/step · ${fmtSeconds(e.elapsed)} elapsed · ETA ${fmtSeconds(e.eta)} · ` +
        `content ${t.content.toFixed(3)} style ${t.style.toFixed(4)}`;
      drawPlot();
    }
    if (e.type === "preview") {
      const img = $("preview");
      img.src = url(`/api/jobs/${jobId}/preview?n=${e.n}`);
      img.hidden = false;
      $("placeholder").hidden = true;
    }
    if (e.type === "end") {
      source.close();
      state.source = null;
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

function setButtons(active) {
  $("cancel").disabled = !active;
  $("continue").disabled = state.following === null;
  $("restart").disabled = state.following === null;
}

const PLOT_COLORS = { content: "#2b6cb0", style: "#b4462b", tv: "#3a7d44" };

function drawPlot() {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  const keys = Object.keys(PLOT_COLORS).filter((k) => state.points.some((p) => p[k] > 0));
  const values = state.points.flatMap((p) => keys.map((k) => p[k]).filter((v) => v > 0));
  if (!values.length) {
    ctx.fillStyle = "#999";
    ctx.fillText("loss terms (log scale) appear here while a job runs", pad, h / 2);
    return;
  }
  let lo = Math.log10(Math.min(...values)), hi = Math.log10(Math.max(...values));
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const n = Math.max(2, state.points.length);
  const x = (i) => pad + (w - 2 * pad) * i / (n - 1);
  const y = (v) => h - pad / 2 - (h - pad) * (Math.log10(v) - lo) / (hi - lo);
  ctx.strokeStyle = "#ddd";
  ctx.beginPath(); ctx.moveTo(pad, pad / 2); ctx.lineTo(pad, h - pad / 2); ctx.lineTo(w - pad, h - pad / 2); ctx.stroke();
  ctx.fillStyle = "#777";
  ctx.fillText("1e" + hi.toFixed(1), 2, pad / 2 + 8);
  ctx.fillText("1e" + lo.toFixed(1), 2, h - pad / 2);
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
  await guarded(async () => {
    const body = action === "cancel" ? undefined : { settings: readSettings() };
    const job = await api(`/api/jobs/${state.following}/${action}`, { method: "POST", json: body });
    if (action !== "cancel") follow(job.id);
    refresh();
  });
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
  $("status").textContent = data.running !== null ? `running job ${data.running}` : "idle";
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
      actions.appendChild(button("Explain", () => guarded(async () => {
        $("status").textContent = `explaining job ${j.id}...`;
        const r = await api(`/api/jobs/${j.id}/explain`, { method: "POST" });
        window.open(url(r.report), "_blank");
      }), "stylelab explain: Gram matrices, moments and distances of this result"));
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
  }
  if (!jobs.length) box.innerHTML = "<p class='hint'>finished jobs appear here, with their settings</p>";
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
