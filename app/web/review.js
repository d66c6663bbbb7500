// The review page: polls /api/status, lists /api/inspections with the
// filters, shows /api/parts/ID and posts reviews with the bearer token.
// Every value from the log is put on the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let selectedPart = null;
const PAGE = 200;            // rows the list shows at first, and "show more" adds
const checked = new Set();   // part ids ticked for bulk confirm; kept over refreshes
let listSignature = "";      // what the list shows now, to skip a refresh that changes nothing
let appliedQuery = null;     // the filters as last applied (Filter, show more, page load)

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
        const dpr = devicePixelRatio || 1;
        const rowH = 13 * dpr;
        ctx.save();
        ctx.font = Math.round(11 * dpr) + "px system-ui, sans-serif";
        // Each label goes in the first row where it overlaps no other
        // label, by its measured width, so lines close together stay
        // readable; the boxes (CSS px) are kept on the chart's element.
        const rows = [];
        const boxes = [];
        const sorted = (u._marks || []).map((m) => ({ ...m, px: u.valToPos(m.x, "x", true) }))
          .filter((m) => m.px >= u.bbox.left && m.px <= u.bbox.left + u.bbox.width)
          .sort((a, b) => a.px - b.px);
        for (const m of sorted) {
          ctx.strokeStyle = m.color || "#c33";
          ctx.setLineDash([4, 3]);
          ctx.beginPath();
          ctx.moveTo(m.px, u.bbox.top);
          ctx.lineTo(m.px, u.bbox.top + u.bbox.height);
          ctx.stroke();
          const w = ctx.measureText(m.label).width;
          // Right of the line, or left of it where the plot ends.
          let x0 = m.px + 3 * dpr;
          if (x0 + w > u.bbox.left + u.bbox.width) x0 = m.px - 3 * dpr - w;
          let row = rows.findIndex((r) => r.every(([a, b]) => x0 + w + 2 * dpr <= a || x0 >= b + 2 * dpr));
          if (row < 0) { rows.push([]); row = rows.length - 1; }
          rows[row].push([x0, x0 + w]);
          const y = u.bbox.top + rowH * (row + 1);
          ctx.fillStyle = m.color || "#c33";
          ctx.fillText(m.label, x0, y);
          boxes.push({ label: m.label, left: x0 / dpr, right: (x0 + w) / dpr,
            top: (y - 11 * dpr) / dpr, bottom: y / dpr });
        }
        u.root.parentElement.dataset.labelBoxes = JSON.stringify(boxes);
        ctx.restore();
      },
    },
  };
  const u = new window.uPlot({
    title, width: opts.width || chartWidth(el), height: opts.height || 170,
    scales: { x: { time: !opts.x } },
    axes: [{ label: opts.x || "" }, { label }],
    series: [{ label: opts.x || "time" }, { label, stroke: color, width: 1.5, spanGaps: false }],
    legend: { show: false },
    plugins: [markPlugin],
  }, [[], []], el);
  u._marks = marks;
  return u;
}

// As wide as the box the chart goes in (the part panel may be narrow).
function chartWidth(el) {
  const w = el.clientWidth || (el.parentElement && el.parentElement.clientWidth) || 380;
  return Math.max(240, Math.min(480, w - 8));
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

// The forwarder to the plant's PostgreSQL: link, rows waiting, lag.
function renderPlant(p) {
  $("st-plant-box").hidden = !p;
  if (!p) return;
  const backlog = Object.values(p.backlog).reduce((a, b) => a + b, 0);
  let t = p.schema_newer ? "REFUSED (central schema newer)" : p.connected ? "up" : "DOWN";
  t += ", " + backlog + " rows waiting";
  if (backlog > 0) t += ", oldest " + fmt(p.oldest_unforwarded_age_s, 0) + " s";
  if (p.lost > 0) t += ", " + p.lost + " lost";
  text($("st-plant"), t);
  $("st-plant").title = p.last_error || "";
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
    renderPlant(s.plant);
    // A running line adds parts: the list follows with the status poll.
    if (s.line) refreshList({ live: true });
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

// The rows in the order shown (newest first).
function listRows() {
  return Array.from($("inspections").tBodies[0].rows);
}

function updateBulk() {
  const shownIds = listRows().map((tr) => Number(tr.dataset.part));
  for (const id of Array.from(checked)) if (!shownIds.includes(id)) checked.delete(id);
  const n = checked.size;
  $("confirm-selected").disabled = n === 0;
  text($("confirm-selected"), "confirm selected (" + n + ")");
  $("select-all").checked = n > 0 && n === shownIds.length;
  $("select-all").indeterminate = n > 0 && n < shownIds.length;
}

function renderRow(r) {
  const tr = document.createElement("tr");
  tr.className = r.verdict + (r.part_id === selectedPart ? " selected" : "");
  tr.dataset.part = r.part_id;
  tr.dataset.verdict = r.verdict;
  const sel = document.createElement("td");
  sel.className = "sel";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.setAttribute("aria-label", "select part " + r.part_id);
  box.checked = checked.has(r.part_id);
  box.addEventListener("click", (ev) => ev.stopPropagation());
  box.addEventListener("change", () => {
    if (box.checked) checked.add(r.part_id); else checked.delete(r.part_id);
    updateBulk();
  });
  sel.append(box);
  tr.append(sel);
  const cells = [
    [r.part_id, "num"], [r.time, "time"], [r.verdict + (r.failsafe ? " (fail-safe)" : ""), "verdict"],
    [r.class, ""], [fmt(r.score, 3), "num"], [fmt(r.vision_score, 3), "num"],
    [fmt(r.signal_score, 3), "num"], [fmt(r.latency_ms, 1), "num"],
    [r.review ? r.review + " → " + r.review_verdict : "", "review"],
  ];
  for (const [v, cls] of cells) {
    const td = document.createElement("td");
    td.className = cls;
    text(td, v);
    tr.appendChild(td);
  }
  tr.addEventListener("click", () => openPart(r.part_id));
  return tr;
}

// live: a refresh from the status poll, not asked for. It uses the filters
// as last applied (a half-edited filter is not applied behind the user's
// back), is skipped while the user types in the filters, and keeps the
// first row in view where it was, so new parts arriving above do not push
// the list down under the reader's eyes.
async function refreshList(opts = {}) {
  const err = $("list-error");
  const filters = $("filters");
  if (opts.live && filters.contains(document.activeElement) &&
      document.activeElement.tagName === "INPUT") return;
  if (!opts.live || appliedQuery === null) appliedQuery = filterQuery();
  try {
    const data = await getJSON("/api/inspections?" + appliedQuery);
    err.hidden = true;
    const rows = data.inspections.slice().reverse();
    const sig = JSON.stringify([data.total, rows.map((r) => [r.id, r.review, r.review_verdict])]);
    if (opts.live && sig === listSignature) return;
    listSignature = sig;
    const body = $("inspections").tBodies[0];
    // The first row in view, and where it is, before the rows change.
    let anchor = null;
    for (const tr of body.rows) {
      const top = tr.getBoundingClientRect().top;
      if (top >= 0) { anchor = { part: tr.dataset.part, top }; break; }
    }
    body.replaceChildren(...rows.map(renderRow));
    if (anchor && window.scrollY > 0) {
      const same = body.querySelector('tr[data-part="' + CSS.escape(anchor.part) + '"]');
      if (same) window.scrollBy(0, same.getBoundingClientRect().top - anchor.top);
    }
    const total = data.total === undefined ? rows.length : data.total;
    text($("list-count"), rows.length < total ? "showing " + rows.length + " of " + total
      : total + (total === 1 ? " part" : " parts"));
    $("list-more").hidden = !data.has_more;
    updateBulk();
  } catch (e) {
    err.hidden = false;
    text(err, e.message);
  }
}

// Show the next PAGE rows too: the list's limit grows (up to the API's).
function showMore() {
  const limit = $("filters").elements.limit;
  limit.value = String(Math.min(10000, (Number(limit.value) || PAGE) + PAGE));
  refreshList();
}

// ---- part media: camera image with its maps, vibration ----

// [{canvas, img, heat, anomaly}] of the open part: heat the defect map,
// anomaly the good-only model's map (a fused or a good-only package), each null
const shown = { images: [] };

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot load " + url));
    img.src = url;
  });
}

// The two maps' colour ramps, weak to strong (review.css's swatches show
// the same): the defect map yellow to red, the anomaly map cyan to blue, so
// that neither reads as the other where both are hot.
const MAP_COLOURS = {
  defect: (v) => [255, Math.round(200 * (1 - v)), 0],
  anomaly: (v) => [0, Math.round(220 * (1 - v)), 255],
};

// Paints map (a gray image, 0..255 = 0..1) over ctx's canvas in colour,
// its alpha the value times opacity.
function drawMap(ctx, map, colour, opacity) {
  const off = document.createElement("canvas");
  off.width = ctx.canvas.width;
  off.height = ctx.canvas.height;
  const o = off.getContext("2d");
  o.drawImage(map, 0, 0, off.width, off.height);
  const px = o.getImageData(0, 0, off.width, off.height);
  for (let i = 0; i < px.data.length; i += 4) {
    const v = px.data[i] / 255;
    const [r, g, b] = colour(v);
    px.data[i] = r;
    px.data[i + 1] = g;
    px.data[i + 2] = b;
    px.data[i + 3] = Math.round(255 * v * opacity);
  }
  o.putImageData(px, 0, 0);
  ctx.drawImage(off, 0, 0);
}

// The camera image, over it the anomaly map and then the defect map (the
// model's verdict comes from the latter: it stays on top), each shown while
// its box is ticked, one opacity slider for both.
function drawPart(p) {
  const { canvas, img, heat, anomaly } = p;
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const opacity = Number($("d-heat-opacity").value) / 100;
  if (anomaly && $("d-anomaly-show").checked) drawMap(ctx, anomaly, MAP_COLOURS.anomaly, opacity);
  if (heat && $("d-heat-show").checked) drawMap(ctx, heat, MAP_COLOURS.defect, opacity);
}

// The map of camera's image among maps: its own, else the part's (vigild
// keeps one map per part, of the worst camera, with no camera named).
function mapFor(maps, camera) {
  return maps.find((h) => h.camera === camera) || maps[0] || null;
}

async function showMedia(media) {
  const box = $("d-media");
  box.replaceChildren();
  shown.images = [];
  const images = media.filter((m) => m.kind === "image");
  const heats = media.filter((m) => m.kind === "heatmap");
  // Kept by fused packages (defect model + good-only model) beside the
  // defect map, and by good-only packages as their one map.
  const anomalies = media.filter((m) => m.kind === "anomaly");
  $("d-heat-controls").hidden = (heats.length === 0 && anomalies.length === 0) || images.length === 0;
  $("d-heat-label").hidden = heats.length === 0;
  $("d-anomaly-label").hidden = anomalies.length === 0;
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
    const hm = mapFor(heats, m.camera), am = mapFor(anomalies, m.camera);
    try {
      const entry = { canvas, img: await loadImage(m.url), heat: hm ? await loadImage(hm.url) : null,
        anomaly: am ? await loadImage(am.url) : null };
      shown.images.push(entry);
      drawPart(entry);
    } catch (e) {
      text(cap, "camera " + m.camera + ": " + e.message);
    }
  }
}

// Beside the part, a recent accepted part's image from the same camera,
// without any map: what a good part looks like today.
async function showReference(id, camera) {
  const box = $("d-reference");
  box.replaceChildren();
  box.hidden = true;
  let ref;
  try {
    ref = await getJSON("/api/reference" + (camera ? "?camera=" + encodeURIComponent(camera) : ""));
  } catch (e) {
    return;  // no good part kept an image yet: nothing to compare with
  }
  if (id !== selectedPart || ref.part_id === id) return;
  const fig = document.createElement("figure");
  const canvas = document.createElement("canvas");
  canvas.className = "part-image";
  canvas.dataset.part = ref.part_id;
  const cap = document.createElement("figcaption");
  text(cap, "reference: good part " + ref.part_id + " (" + ref.verdict + "), camera " + ref.camera);
  fig.append(canvas, cap);
  box.append(fig);
  try {
    const entry = { canvas, img: await loadImage(ref.url), heat: null, anomaly: null };
    if (id !== selectedPart) return;
    drawPart(entry);
    box.hidden = false;
  } catch (e) {
    text(cap, "reference: " + e.message);
    box.hidden = false;
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
  // The window's source when the log names one (the vibration section).
  setChart("waveform", $("d-waveform"), w.sensor ? "vibration (" + w.sensor + ")" : "vibration",
    "g", "#345",
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

// A fresh form for every part: the decision and note of the part before
// must never carry over to this one (one Save would mislabel it). The
// reviewer and the token stay.
function resetReviewForm(verdict) {
  const f = $("review");
  f.elements.decision.value = "confirm";
  f.elements.verdict.value = verdict;
  f.elements.note.value = "";
  text($("review-result"), "");
}

function narrow() {
  return window.matchMedia("(max-width: 1000px)").matches;
}

async function openPart(id) {
  selectedPart = id;
  const d = await getJSON("/api/parts/" + encodeURIComponent(id));
  if (id !== selectedPart) return;  // another part was opened meanwhile
  const r = d.inspection;
  const panel = $("detail");
  panel.hidden = false;
  text($("d-part"), r.part_id);
  resetReviewForm(r.verdict);
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
  for (const tr of listRows()) {
    const on = Number(tr.dataset.part) === id;
    tr.classList.toggle("selected", on);
    if (on) tr.scrollIntoView({ block: "nearest" });
  }
  // The panel starts at its top for every part (it scrolls on its own);
  // on a wide screen it sticks in view beside the list, on a narrow one
  // it covers the screen.
  panel.scrollTop = 0;
  if (!narrow() && panel.getBoundingClientRect().top < 0) panel.scrollIntoView({ block: "start" });
  // labels.js: a fresh label (type, painted region) for this part.
  if (window.vigilLabels) window.vigilLabels.open(id, d);
  await showMedia(d.media || []);
  if (id !== selectedPart) return;
  const image = (d.media || []).find((m) => m.kind === "image");
  await showReference(id, image ? image.camera : null);
  try {
    await showVibration(id, d);
  } catch (e) {
    text($("d-marks"), "vibration: " + e.message);
  }
}

function closePart() {
  selectedPart = null;
  $("detail").hidden = true;
  for (const tr of listRows()) tr.classList.remove("selected");
}

// One review of one part with the form's reviewer and token: the answer
// and the HTTP status; the token is kept for the session.
async function postReview(part, body) {
  const f = $("review");
  const token = f.elements.token.value.trim();
  sessionStorage.setItem("vigil-token", token);
  body.reviewer = f.elements.reviewer.value;
  const r = await fetch("/api/parts/" + encodeURIComponent(part) + "/review", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
    body: JSON.stringify(body),
  });
  return { ok: r.ok, status: r.status, answer: await r.json() };
}

async function submitReview(ev) {
  if (ev) ev.preventDefault();
  const f = $("review");
  const part = selectedPart;
  if (part === null) return;
  const decision = f.elements.decision.value;
  const body = { decision, note: f.elements.note.value };
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
  const { ok, status, answer } = await postReview(part, body);
  if (!ok) {
    text($("review-result"), "refused (" + status + "): " + answer.error);
    return;
  }
  // "saved" only once the panel and the list show the stored review, so
  // what the page says is what the log holds.
  await openPart(part);
  await refreshList();
  text($("review-result"), "saved: " + answer.decision + " → " + answer.verdict);
}

// Confirm every ticked part: one review each, the same token; stops at
// the first refusal (a wrong token refuses them all alike).
async function confirmSelected() {
  const parts = listRows().map((tr) => Number(tr.dataset.part)).filter((id) => checked.has(id));
  let done = 0;
  text($("bulk-result"), "confirming " + parts.length + "…");
  for (const id of parts) {
    const { ok, status, answer } = await postReview(id, { decision: "confirm", note: "" });
    if (!ok) {
      text($("bulk-result"), "confirmed " + done + ", refused (" + status + ") at part " + id +
        ": " + answer.error);
      await refreshList();
      return;
    }
    checked.delete(id);
    done++;
  }
  await refreshList();
  if (selectedPart !== null && parts.includes(selectedPart)) await openPart(selectedPart);
  text($("bulk-result"), "confirmed " + done + (done === 1 ? " part" : " parts"));
}

// Move the open part by step rows in the list as shown (the first row
// when none is open).
function stepPart(step) {
  const rows = listRows();
  if (!rows.length) return;
  let i = rows.findIndex((tr) => Number(tr.dataset.part) === selectedPart);
  i = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + step));
  openPart(Number(rows[i].dataset.part));
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  const open = selectedPart !== null && !$("detail").hidden;
  // After o: choose the verdict with the arrow keys, Enter saves.
  if (ev.key === "Enter" && open && t === $("review").elements.verdict) {
    ev.preventDefault();
    submitReview();
    return;
  }
  // Typing in a field is typing, not a command.
  if (t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName)) &&
      !(t.type === "checkbox" || t.type === "radio")) return;
  switch (ev.key) {
  case "j": case "ArrowDown": stepPart(1); break;
  case "k": case "ArrowUp": stepPart(-1); break;
  case "c":
    if (!open) return;
    $("review").elements.decision.value = "confirm";
    submitReview();
    break;
  case "o":
    if (!open) return;
    $("review").elements.decision.value = "overrule";
    $("review").elements.verdict.focus();
    break;
  case "Escape":
    if (!open) return;
    closePart();
    break;
  default:
    return;
  }
  ev.preventDefault();
}

document.addEventListener("DOMContentLoaded", () => {
  $("review").elements.token.value = sessionStorage.getItem("vigil-token") || "";
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refreshList(); });
  $("review").addEventListener("submit", submitReview);
  $("list-more").addEventListener("click", showMore);
  $("d-close").addEventListener("click", closePart);
  $("select-all").addEventListener("change", () => {
    for (const tr of listRows()) {
      const id = Number(tr.dataset.part);
      if ($("select-all").checked) checked.add(id); else checked.delete(id);
      tr.querySelector("td.sel input").checked = $("select-all").checked;
    }
    updateBulk();
  });
  $("confirm-selected").addEventListener("click", confirmSelected);
  document.addEventListener("keydown", onKey);
  // A tablet turned, a window resized: the charts follow their boxes.
  window.addEventListener("resize", () => {
    for (const u of Object.values(charts))
      u.setSize({ width: chartWidth(u.root.parentElement), height: u.height });
  });
  const redraw = () => shown.images.forEach(drawPart);
  $("d-heat-show").addEventListener("change", redraw);
  $("d-anomaly-show").addEventListener("change", redraw);
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
