// The review page: polls /api/status, lists /api/inspections with the
// filters, shows /api/parts/ID and posts reviews with the bearer token.
// Every value from the log is put on the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let selectedPart = null;

// ---- charts (uPlot, when vigild serves it) ----

const charts = {};

function chartsAvailable() {
  return typeof window.uPlot === "function";
}

// A line chart in el; x is time (s since 1970) unless opts.x names a unit.
// marks: [{x, label}] drawn as vertical lines (bearing defect frequencies).
function lineChart(el, title, label, color, opts = {}) {
  const marks = opts.marks || [];
  const markPlugin = {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.font = "11px system-ui, sans-serif";
        (u._marks || []).forEach((m, i) => {
          const x = u.valToPos(m.x, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          ctx.strokeStyle = m.color || "#c33";
          ctx.setLineDash([4, 3]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillStyle = m.color || "#c33";
          // Staggered, so that lines close together stay readable.
          ctx.fillText(m.label, x + 3, u.bbox.top + 12 * (1 + i) * devicePixelRatio);
        });
        ctx.restore();
      },
    },
  };
  const u = new window.uPlot({
    title, width: opts.width || 380, height: opts.height || 170,
    scales: { x: { time: !opts.x } },
    axes: [{ label: opts.x || "" }, { label }],
    series: [{ label: opts.x || "time" }, { label, stroke: color, width: 1.5, spanGaps: false }],
    legend: { show: false },
    plugins: [markPlugin],
  }, [[], []], el);
  u._marks = marks;
  return u;
}

function setChart(name, el, title, label, color, xs, ys, opts = {}) {
  if (!chartsAvailable()) return;
  if (!charts[name]) charts[name] = lineChart(el, title, label, color, opts);
  charts[name]._marks = opts.marks || [];
  charts[name].setData([xs, ys]);
}

async function refreshHistory() {
  if (!chartsAvailable()) return;
  try {
    const h = await getJSON("/api/history");
    if (!h.line) return;
    $("live").hidden = false;
    setChart("rate", $("chart-rate"), "rate", "parts/min", "#2a6",
      h.t, h.rate_per_min);
    setChart("yield", $("chart-yield"), "yield", "%", "#26a",
      h.t, h.yield.map((y) => (y === null ? null : 100 * y)));
    setChart("latency", $("chart-latency"), "latency (trigger to PLC, mean)", "ms", "#a62",
      h.t, h.latency_ms);
  } catch (e) {
    // The status line says what went wrong; the charts keep their data.
  }
}

function fmt(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function text(el, value) {
  el.textContent = value === null || value === undefined ? "–" : String(value);
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function refreshStatus() {
  try {
    const s = await getJSON("/api/status");
    if (!s.line) {
      text($("st-rate"), "line not running here");
      text($("st-parts"), s.inspections);
      return;
    }
    text($("st-rate"), s.rate_per_min === null ? "–" : fmt(s.rate_per_min, 0) + " /min");
    text($("st-yield"), s.yield === null ? "–" : fmt(100 * s.yield, 1) + " %");
    text($("st-latency"), s.recent_latency_ms === null ? "–"
      : fmt(s.recent_latency_ms, 1) + " ms mean, p99 ≤ " + fmt(s.latency_p99_le_ms, 0) + " ms");
    text($("st-plc"), s.plc_connected ? "up" : "DOWN");
    text($("st-cameras"), s.cameras_up + "/" + s.cameras);
    text($("st-parts"), s.parts);
  } catch (e) {
    text($("st-rate"), "status: " + e.message);
  }
}

function filterQuery() {
  const q = new URLSearchParams();
  for (const el of $("filters").elements) {
    if (el.name && el.value.trim() !== "") q.set(el.name, el.value.trim());
  }
  return q.toString();
}

async function refreshList() {
  const err = $("list-error");
  try {
    const data = await getJSON("/api/inspections?" + filterQuery());
    err.hidden = true;
    const body = $("inspections").tBodies[0];
    body.replaceChildren();
    for (const r of data.inspections.slice().reverse()) {
      const tr = document.createElement("tr");
      tr.className = r.verdict + (r.part_id === selectedPart ? " selected" : "");
      tr.dataset.part = r.part_id;
      const cells = [
        [r.part_id, "num"], [r.time, ""], [r.verdict + (r.failsafe ? " (fail-safe)" : ""), "verdict"],
        [r.class, ""], [fmt(r.score, 3), "num"], [fmt(r.vision_score, 3), "num"],
        [fmt(r.signal_score, 3), "num"], [fmt(r.latency_ms, 1), "num"],
        [r.review ? r.review + " → " + r.review_verdict : "", ""],
      ];
      for (const [v, cls] of cells) {
        const td = document.createElement("td");
        td.className = cls;
        text(td, v);
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => openPart(r.part_id));
      body.appendChild(tr);
    }
  } catch (e) {
    err.hidden = false;
    text(err, e.message);
  }
}

// ---- part media: camera image with the defect heatmap, vibration ----

const shown = { images: [] };  // [{canvas, img, heat}] of the open part

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot load " + url));
    img.src = url;
  });
}

// The camera image, and over it the heatmap (gray 0..255 = defect
// probability) in red, its alpha the probability times the opacity slider.
function drawPart(p) {
  const { canvas, img, heat } = p;
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  if (!heat || !$("d-heat-show").checked) return;
  const off = document.createElement("canvas");
  off.width = canvas.width;
  off.height = canvas.height;
  const o = off.getContext("2d");
  o.drawImage(heat, 0, 0, off.width, off.height);
  const px = o.getImageData(0, 0, off.width, off.height);
  const opacity = Number($("d-heat-opacity").value) / 100;
  for (let i = 0; i < px.data.length; i += 4) {
    const v = px.data[i] / 255;
    px.data[i] = 255;
    px.data[i + 1] = Math.round(200 * (1 - v));
    px.data[i + 2] = 0;
    px.data[i + 3] = Math.round(255 * v * opacity);
  }
  o.putImageData(px, 0, 0);
  ctx.drawImage(off, 0, 0);
}

async function showMedia(media) {
  const box = $("d-media");
  box.replaceChildren();
  shown.images = [];
  const images = media.filter((m) => m.kind === "image");
  const heats = media.filter((m) => m.kind === "heatmap");
  $("d-heat-controls").hidden = heats.length === 0 || images.length === 0;
  if (!images.length) {
    const p = document.createElement("p");
    p.className = "note";
    text(p, "No image kept for this part (defects always, accepted parts sampled).");
    box.append(p);
    return;
  }
  for (const m of images) {
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.className = "part-image";
    canvas.dataset.media = m.id;
    const cap = document.createElement("figcaption");
    text(cap, "camera " + m.camera);
    fig.append(canvas, cap);
    // ring.js: a ring image says it is kept for the recent window only.
    if (window.ringMark) window.ringMark(fig, m);
    box.append(fig);
    const hm = heats.find((h) => h.camera === m.camera) || heats[0];
    try {
      const entry = { canvas, img: await loadImage(m.url), heat: hm ? await loadImage(hm.url) : null };
      shown.images.push(entry);
      drawPart(entry);
    } catch (e) {
      text(cap, "camera " + m.camera + ": " + e.message);
    }
  }
}

async function showVibration(id, d) {
  const marks = $("d-marks");
  marks.replaceChildren();
  $("d-waveform").replaceChildren();
  $("d-spectrum").replaceChildren();
  delete charts.waveform;
  delete charts.spectrum;
  const b = d.bearing, v = d.vibration;
  const lines = b ? [["FTF", b.ftf_hz, v && v.ftf_env], ["BPFO", b.bpfo_hz, v && v.bpfo_env],
    ["BPFI", b.bpfi_hz, v && v.bpfi_env], ["BSF", b.bsf_hz, v && v.bsf_env]] : [];
  for (const [name, hz, env] of lines) {
    const li = document.createElement("li");
    text(li, name + " " + fmt(hz, 1) + " Hz" + (env ? ": " + fmt(env, 1) + " × median" : ""));
    marks.append(li);
  }
  if (!d.media.some((m) => m.kind === "vibration")) return;
  const w = await getJSON("/api/parts/" + encodeURIComponent(id) + "/vibration");
  if (id !== selectedPart || !chartsAvailable()) return;
  const dt = 1000 / w.rate_hz;
  setChart("waveform", $("d-waveform"), "vibration (" + w.sensor + ")", "g", "#345",
    w.waveform_g.map((_, i) => i * dt), w.waveform_g, { x: "ms" });
  if (w.envelope) {
    const top = b ? Math.min(w.rate_hz / 2, 4 * Math.max(b.bpfi_hz, b.bpfo_hz, b.bsf_hz)) : 1000;
    const n = Math.min(w.envelope.magnitude.length, Math.ceil(top / w.envelope.df_hz) + 1);
    setChart("spectrum", $("d-spectrum"), "envelope spectrum (band above " +
      fmt(w.envelope.band_hz, 0) + " Hz)", "g", "#a23",
      Array.from({ length: n }, (_, i) => i * w.envelope.df_hz), w.envelope.magnitude.slice(0, n),
      { x: "Hz", marks: lines.map(([name, hz]) => ({ x: hz, label: name })) });
  }
}

function fillList(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    text(dt, k);
    text(dd, v);
    dl.append(dt, dd);
  }
}

async function openPart(id) {
  selectedPart = id;
  const d = await getJSON("/api/parts/" + encodeURIComponent(id));
  const r = d.inspection;
  $("detail").hidden = false;
  text($("d-part"), r.part_id);
  fillList($("d-fields"), [
    ["verdict", r.verdict + (r.failsafe ? " (fail-safe)" : "")], ["class", r.class],
    ["fused score", fmt(r.score, 3)], ["vision score", fmt(r.vision_score, 3)],
    ["vibration score", fmt(r.signal_score, 3)], ["time (UTC)", r.time],
    ["latency", fmt(r.latency_ms, 2) + " ms"], ["model", r.model_version],
    ["review", r.review ? r.review + " → " + r.review_verdict + (r.review_note ? ": " + r.review_note : "") : "none"],
  ]);
  const v = d.vibration;
  fillList($("d-vibration"), v ? [
    ["velocity RMS (10–1000 Hz)", fmt(v.rms_velocity_mm_s, 2) + " mm/s"],
    ["ISO 10816 zone", v.iso_zone], ["acceleration RMS", fmt(v.rms_accel_g, 3) + " g"],
    ["high-frequency RMS", fmt(v.hf_accel_g, 3) + " g"], ["peak", fmt(v.peak_g, 3) + " g"],
    ["crest factor", fmt(v.crest_factor, 2)], ["kurtosis", fmt(v.kurtosis, 2)],
    ["envelope at FTF", fmt(v.ftf_env, 1) + " × median"],
    ["envelope at BPFO", fmt(v.bpfo_env, 1) + " × median"],
    ["envelope at BPFI", fmt(v.bpfi_env, 1) + " × median"],
    ["envelope at BSF", fmt(v.bsf_env, 1) + " × median"],
  ] : [["figures", "none logged"]]);
  text($("review-result"), "");
  for (const tr of $("inspections").tBodies[0].rows)
    tr.classList.toggle("selected", Number(tr.dataset.part) === id);
  // labels.js: a fresh label (type, painted region) for this part.
  if (window.vigilLabels) window.vigilLabels.open(id, d);
  await showMedia(d.media || []);
  try {
    await showVibration(id, d);
  } catch (e) {
    text($("d-marks"), "vibration: " + e.message);
  }
}

async function submitReview(ev) {
  ev.preventDefault();
  const f = $("review");
  const token = f.elements.token.value.trim();
  sessionStorage.setItem("vigil-token", token);
  const decision = f.elements.decision.value;
  const body = { decision, note: f.elements.note.value, reviewer: f.elements.reviewer.value };
  if (decision === "overrule") body.verdict = f.elements.verdict.value;
  // labels.js: the defect type and the painted mask, when given.
  if (window.vigilLabels) {
    try {
      Object.assign(body, window.vigilLabels.fields());
    } catch (e) {
      text($("review-result"), "not saved: " + e.message);
      return;
    }
  }
  text($("review-result"), "saving…");
  const r = await fetch("/api/parts/" + encodeURIComponent(selectedPart) + "/review", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
    body: JSON.stringify(body),
  });
  const answer = await r.json();
  if (!r.ok) {
    text($("review-result"), "refused (" + r.status + "): " + answer.error);
    return;
  }
  // "saved" only once the panel and the list show the stored review, so
  // what the page says is what the log holds.
  await openPart(selectedPart);
  await refreshList();
  text($("review-result"), "saved: " + answer.decision + " → " + answer.verdict);
}

document.addEventListener("DOMContentLoaded", () => {
  $("review").elements.token.value = sessionStorage.getItem("vigil-token") || "";
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refreshList(); });
  $("review").addEventListener("submit", submitReview);
  const redraw = () => shown.images.forEach(drawPart);
  $("d-heat-show").addEventListener("change", redraw);
  $("d-heat-opacity").addEventListener("input", redraw);
  const q = new URLSearchParams(location.search);
  for (const el of $("filters").elements)
    if (el.name && q.has(el.name)) el.value = q.get(el.name);
  $("charts-unavailable").hidden = chartsAvailable();
  refreshStatus();
  refreshList();
  refreshHistory();
  setInterval(refreshStatus, 2000);
  setInterval(refreshHistory, 5000);
});
