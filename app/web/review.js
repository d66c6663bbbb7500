// The review page: polls /api/status, lists /api/inspections with the
// filters, shows /api/parts/ID and posts reviews with the bearer token.
// Every value from the log is put on the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
// The open part: { part, inspection, reviewIds } or null. A part id the
// line used twice (its counter started over) names two inspections, so the
// page opens, reviews and marks by the inspection's own id.
let selected = null;
let openTicket = 0;          // the latest openPart asked for; an older answer is dropped
const PAGE = 200;            // rows the list shows at first, and "show more" adds
const checked = new Set();   // inspection ids ticked for bulk confirm; kept over refreshes
let listSignature = "";      // what the list shows now, to skip a refresh that changes nothing
let appliedQuery = null;     // the filters as last applied (Filter, show more, page load)
let saving = false;          // a review is on its way: Save, c and Enter wait for its answer
// A review sent that got no answer (vigild stalled, or gone mid-request):
// { inspection, body, reviewIds }. vigild may still store it once it runs
// again, so the retry first looks whether it did, and never stores it twice.
let unanswered = null;

// ---- requests: every one with a timeout, and whether vigild answers ----

// How long a request may take before the page gives up on it and says so:
// a stalled vigild (stopped, swapping) answers nothing, and a page that
// waits for ever says "saving…" for ever. localStorage
// "vigil-fetch-timeout-ms" changes it for one browser (the browser tests
// stall vigild for seconds, not for 15).
const FETCH_TIMEOUT_MS = (() => {
  let v = NaN;
  try {
    v = Number(localStorage.getItem("vigil-fetch-timeout-ms") || NaN);
  } catch (e) { /* no storage here: the default */ }
  return Number.isInteger(v) && v >= 200 ? v : 15000;
})();

// A request that got no answer: kind "timeout" (vigild took longer than
// FETCH_TIMEOUT_MS) or "network" (not running, the network down, or the
// connection lost mid-request); status is 0. An answer refusing it (4xx,
// 5xx) is kind "refused" with its status.
class RequestError extends Error {
  constructor(message, kind, status = 0) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

// vigild answering or not, as the page's last request found it; while it
// is not, the bar at the foot of the window says so and that the figures
// on the page are stale.
const vigilLink = { up: true, since: null, what: "", note: "" };

function renderLink() {
  const bar = $("link-alert"), link = vigilLink;
  if (!bar) return;
  bar.hidden = link.up;
  $("status").classList.toggle("stale", !link.up);
  if (link.up) return;
  text(bar, "Since " + link.since.toLocaleTimeString() + ": " + link.what + ". The figures " +
    "on this page are stale and nothing can be saved; the page keeps trying every 2 s, and " +
    "this bar goes once vigild answers." + (link.note ? " " + link.note : ""));
}

// note: what the person tried and did not get (a part not opened), said
// in the bar until vigild answers again. Answering again is told to the
// page ("vigil-link-up" on document): what failed meanwhile loads again.
function setLink(up, what = "", note = "") {
  const link = vigilLink;
  if (up === link.up && !note) return;
  if (!up && link.up) link.since = new Date();
  link.up = up;
  link.what = what;
  link.note = up ? "" : note || link.note;
  renderLink();
  if (up) document.dispatchEvent(new CustomEvent("vigil-link-up"));
}

{
  const plainFetch = window.fetch.bind(window);
  window.fetch = async (input, init = {}) => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const r = await plainFetch(input, { ...init, signal: ctl.signal });
      setLink(true);
      return r;
    } catch (e) {
      const err = ctl.signal.aborted
        ? new RequestError("no answer from vigild within " + FETCH_TIMEOUT_MS / 1000 +
          " s (stopped or overloaded)", "timeout")
        : new RequestError("vigild cannot be reached (not running, or the network is down)",
          "network");
      setLink(false, err.message);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
}

// The JSON of an answer; an answer refusing the request throws its error.
async function answerJSON(r) {
  let body = null;
  try {
    body = await r.json();
  } catch (e) {
    if (r.ok) throw new RequestError("vigild's answer is not JSON", "refused", r.status);
  }
  if (!r.ok)
    throw new RequestError((body && body.error) || r.status + " " + r.statusText, "refused",
      r.status);
  return body;
}

// Runs fn() unless the last run has not finished: a poll of a stalled
// vigild must not pile up requests (the browser opens six connections to
// it at most, and a Save would wait behind them).
function unlessBusy(fn) {
  let busy = false;
  return async () => {
    if (busy) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
    }
  };
}

// A message at a control: an error (red) or not.
function say(el, value, error = false) {
  text(el, value);
  el.classList.toggle("error", error);
}

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
  return answerJSON(await fetch(url, { cache: "no-store" }));
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
    // Unreachable: the bar at the foot says so and marks the figures stale.
    if (e.kind === "refused") text($("st-rate"), "status: " + e.message);
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
  const shownIds = listRows().map((tr) => Number(tr.dataset.inspection));
  for (const id of Array.from(checked)) if (!shownIds.includes(id)) checked.delete(id);
  const n = checked.size;
  $("confirm-selected").disabled = n === 0 || !!$("confirm-selected").dataset.busy;
  text($("confirm-selected"), "confirm selected (" + n + ")");
  $("select-all").checked = n > 0 && n === shownIds.length;
  $("select-all").indeterminate = n > 0 && n < shownIds.length;
}

function renderRow(r) {
  const tr = document.createElement("tr");
  tr.className = r.verdict + (selected && r.id === selected.inspection ? " selected" : "");
  tr.dataset.part = r.part_id;
  tr.dataset.inspection = r.id;
  tr.dataset.verdict = r.verdict;
  const sel = document.createElement("td");
  sel.className = "sel";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.setAttribute("aria-label", "select part " + r.part_id);
  box.checked = checked.has(r.id);
  box.addEventListener("click", (ev) => ev.stopPropagation());
  box.addEventListener("change", () => {
    if (box.checked) checked.add(r.id); else checked.delete(r.id);
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
  tr.addEventListener("click", () => openPart(r.part_id, r.id));
  return tr;
}

// The list's rows no longer show the filters asked for: a refused filter
// (a bad value) empties the list, so that no other view passes for the
// one asked for; a request without an answer leaves the rows, marked as
// not current.
function listFailed(e, live) {
  const err = $("list-error");
  say(err, e.kind === "refused" ? e.message
    : "The list is not current: " + e.message + ". The rows below are from before.", true);
  err.hidden = false;
  if (e.kind === "refused") {
    $("inspections").tBodies[0].replaceChildren();
    listSignature = "";
    text($("list-count"), "no list: the filters are refused");
    $("list-more").hidden = true;
    updateBulk();
  } else {
    $("table-wrap").classList.add("stale");
    if (!live) text($("list-count"), "not current: vigild did not answer");
  }
  // Asked for (Filter, show more): the error is where the person looks.
  if (!live) err.scrollIntoView({ block: "nearest" });
}

// live: a refresh from the status poll, not asked for. It uses the filters
// as last applied (a half-edited filter is not applied behind the user's
// back; none while the address's filters are refused), is skipped while
// the user types in the filters, and keeps the first row in view where it
// was, so new parts arriving above do not push the list down under the
// reader's eyes.
async function refreshList(opts = {}) {
  const err = $("list-error");
  const filters = $("filters");
  if (opts.live && filters.contains(document.activeElement) &&
      document.activeElement.tagName === "INPUT") return;
  if (opts.live && appliedQuery === null) return;
  if (!opts.live) {
    appliedQuery = filterQuery();
    text($("list-count"), "filtering…");  // what it said is of the filters before
  }
  const query = appliedQuery;
  let data;
  try {
    data = await getJSON("/api/inspections?" + query);
  } catch (e) {
    if (query === appliedQuery) listFailed(e, opts.live);
    return;
  }
  if (query !== appliedQuery) return;  // other filters were applied meanwhile
  err.hidden = true;
  $("table-wrap").classList.remove("stale");
  const rows = data.inspections.slice().reverse();
  const sig = JSON.stringify([data.total, rows.map((r) => [r.id, r.review, r.review_verdict])]);
  if (opts.live && sig === listSignature) return;
  listSignature = sig;
  const body = $("inspections").tBodies[0];
  // The first row in view, and where it is, before the rows change.
  let anchor = null;
  for (const tr of body.rows) {
    const top = tr.getBoundingClientRect().top;
    if (top >= 0) { anchor = { inspection: tr.dataset.inspection, top }; break; }
  }
  body.replaceChildren(...rows.map(renderRow));
  if (anchor && window.scrollY > 0) {
    const same = body.querySelector('tr[data-inspection="' + CSS.escape(anchor.inspection) + '"]');
    if (same) window.scrollBy(0, same.getBoundingClientRect().top - anchor.top);
  }
  const total = data.total === undefined ? rows.length : data.total;
  text($("list-count"), rows.length < total ? "showing " + rows.length + " of " + total
    : total + (total === 1 ? " part" : " parts"));
  $("list-more").hidden = !data.has_more;
  updateBulk();
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
  // Drawn, maps included: until now the canvas is a blank 300 x 150
  // (its images load first), which a reader must not take for the part.
  canvas.dataset.drawn = "1";
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
async function showReference(ticket, id, camera) {
  const box = $("d-reference");
  box.replaceChildren();
  box.hidden = true;
  let ref;
  try {
    ref = await getJSON("/api/reference" + (camera ? "?camera=" + encodeURIComponent(camera) : ""));
  } catch (e) {
    return;  // no good part kept an image yet: nothing to compare with
  }
  if (ticket !== openTicket || ref.part_id === id) return;
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
    if (ticket !== openTicket) return;
    drawPart(entry);
    box.hidden = false;
  } catch (e) {
    text(cap, "reference: " + e.message);
    box.hidden = false;
  }
}

async function showVibration(ticket, sel, d) {
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
  const w = await getJSON(partURL(sel, "/vibration"));
  if (ticket !== openTicket || !chartsAvailable()) return;
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

// The API's URL of a part (sel: { part, inspection }), path after it: the
// inspection named by its own id when known, so that a part id the line
// used twice is never the other inspection.
function partURL(sel, path = "") {
  const known = sel.inspection !== undefined && sel.inspection !== null;
  return "/api/parts/" + encodeURIComponent(sel.part) + path +
    (known ? "?inspection=" + encodeURIComponent(sel.inspection) : "");
}

// A fresh form for every part: the decision and note of the part before
// must never carry over to this one (one Save would mislabel it). The
// reviewer and the token stay.
function resetReviewForm(verdict) {
  const f = $("review");
  f.elements.decision.value = "confirm";
  f.elements.verdict.value = verdict;
  f.elements.note.value = "";
  say($("review-result"), "");
}

function narrow() {
  return window.matchMedia("(max-width: 1000px)").matches;
}

// ---- the open part in the address ----

// While a part is open the address says which (open=PART&inspection=ID):
// a link to it, and Back (a tablet's back gesture) closes the part rather
// than leaving the page. Opening a part adds one history entry; moving to
// another part while one is open replaces it; closing goes back over it.
let pushedOpen = false;  // the history entry now is the one openPart pushed

function addressWith(sel) {
  const q = new URLSearchParams(location.search);
  q.delete("open");
  q.delete("inspection");
  if (sel) {
    q.set("open", sel.part);
    q.set("inspection", sel.inspection);
  }
  const t = q.toString();
  return location.pathname + (t ? "?" + t : "") + location.hash;
}

// open= and inspection= of the address: { part, inspection } or null, a
// bad value said in bad (as formFromURL does).
function openFromURL(bad) {
  const q = new URLSearchParams(location.search);
  const part = q.get("open"), inspection = q.get("inspection");
  if (part === null && inspection === null) return null;
  if (part === null || !/^\d{1,10}$/.test(part)) {
    bad.push("open=" + (part === null ? " (none)" : part) + " in the address: open is the id " +
      "of the part to open, a whole number" + (part === null ? ", given with inspection" : ""));
    return null;
  }
  if (inspection !== null && !/^\d{1,18}$/.test(inspection)) {
    bad.push("inspection=" + inspection + " in the address: inspection is the id of one " +
      "inspection of the part (a whole number), or not given for its latest");
    return null;
  }
  return { part: Number(part), inspection: inspection === null ? undefined : Number(inspection) };
}

// A part the person asked for did not open: said at the top of the list,
// in the open part's panel (which still shows the part before) and, when
// vigild did not answer, in the bar at the foot.
function partNotOpened(part, e) {
  const msg = "Part " + part + " was not opened: " + e.message +
    (e.kind === "refused" ? "." : "; open it again once vigild answers.");
  const err = $("list-error");
  say(err, msg, true);
  err.hidden = false;
  if (e.kind !== "refused") setLink(false, e.message, "Part " + part + " was not opened.");
  if (selected) {
    say($("d-error"), msg + " This is still part " + selected.part + ".", true);
    $("d-error").hidden = false;
  }
}

// how: "push" (opened by the person: a history entry, above), or "none"
// (from the address, Back or forward, a refresh after a save). True once
// the part is shown.
async function openPart(part, inspection, how = "push") {
  const ticket = ++openTicket;
  let d;
  try {
    d = await getJSON(partURL({ part, inspection }));
  } catch (e) {
    if (ticket === openTicket) partNotOpened(part, e);
    return false;
  }
  if (ticket !== openTicket) return false;  // another part was opened meanwhile
  const r = d.inspection;
  const wasOpen = selected !== null;
  const sel = { part: r.part_id, inspection: r.id, reviewIds: (d.reviews || []).map((v) => v.id) };
  selected = sel;
  // A review of this inspection that got no answer is still looked for
  // before the next is sent, also after the part was closed and opened.
  if (unanswered && unanswered.inspection !== r.id) unanswered = null;
  if (how === "push") {
    if (!wasOpen) {
      history.pushState({ vigilOpen: true }, "", addressWith(sel));
      pushedOpen = true;
    } else {
      history.replaceState(history.state, "", addressWith(sel));
    }
  }
  const panel = $("detail");
  panel.hidden = false;
  $("d-error").hidden = true;
  text($("d-part"), r.part_id);
  resetReviewForm(r.verdict);
  fillList($("d-fields"), [
    ["verdict", r.verdict + (r.failsafe ? " (fail-safe)" : "")], ["class", r.class],
    ["fused score", fmt(r.score, 3)], ["vision score", fmt(r.vision_score, 3)],
    ["vibration score", fmt(r.signal_score, 3)], ["time", r.time],
    ["inspection", r.id],
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
    const on = Number(tr.dataset.inspection) === r.id;
    tr.classList.toggle("selected", on);
    if (on) tr.scrollIntoView({ block: "nearest" });
  }
  // The panel starts at its top for every part (it scrolls on its own);
  // on a wide screen it sticks in view beside the list, on a narrow one
  // it covers the screen.
  panel.scrollTop = 0;
  if (!narrow() && panel.getBoundingClientRect().top < 0) panel.scrollIntoView({ block: "start" });
  // labels.js: a fresh label (type, painted region) for this part.
  if (window.vigilLabels) window.vigilLabels.open(r.part_id, d);
  await showMedia(d.media || []);
  if (ticket !== openTicket) return true;
  const image = (d.media || []).find((m) => m.kind === "image");
  await showReference(ticket, r.part_id, image ? image.camera : null);
  try {
    await showVibration(ticket, sel, d);
  } catch (e) {
    text($("d-marks"), "vibration: " + e.message);
  }
  return true;
}

// how: "back" (the close button, Esc: the history entry openPart pushed
// goes with it), or "none" (Back itself closed it).
function closePart(how = "back") {
  openTicket++;  // a part still on its way opens nothing now
  selected = null;
  $("detail").hidden = true;
  for (const tr of listRows()) tr.classList.remove("selected");
  if (how === "back") {
    if (pushedOpen) history.back();
    else history.replaceState(history.state, "", addressWith(null));
  }
  pushedOpen = false;
}

// Back or forward over a part's history entry.
function onHistory() {
  pushedOpen = !!(history.state && history.state.vigilOpen);
  const bad = [];
  const want = openFromURL(bad);
  if (!want) {
    if (selected) closePart("none");
  } else if (!selected || selected.part !== want.part || selected.inspection !== want.inspection) {
    openPart(want.part, want.inspection, "none");
  }
}

// One review of one inspection with the form's reviewer and token: the
// answer, or a RequestError; the token is kept for the session.
async function postReview(sel, body) {
  const f = $("review");
  const token = f.elements.token.value.trim();
  sessionStorage.setItem("vigil-token", token);
  body.reviewer = f.elements.reviewer.value;
  const r = await fetch(partURL(sel, "/review"), {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
    body: JSON.stringify(body),
  });
  return answerJSON(r);
}

// While a review is on its way, Save (and c, Enter) cannot send it again:
// two clicks on a slow answer stored it twice.
function setSaving(on) {
  saving = on;
  $("review").querySelector("button[type=submit]").disabled = on;
  $("review").setAttribute("aria-busy", String(on));
}

const sameReview = (a, b) => a.decision === b.decision && a.note === b.note &&
  (a.decision === "confirm" || a.verdict === b.verdict);

// After a review of sel that got no answer: the review vigild stored from
// it all the same (a review of the inspection newer than those shown when
// it was sent, with its decision, verdict and note), or null.
async function storedLate(sel) {
  const u = unanswered;
  if (!u || u.inspection !== sel.inspection) return null;
  const d = await getJSON(partURL(sel));
  return (d.reviews || []).map((r) => ({ id: r.id, decision: r.decision, verdict: r.verdict,
    note: r.note || "" })).find((r) => !u.reviewIds.includes(r.id) && sameReview(r, u.body)) ||
    null;
}

async function submitReview(ev) {
  if (ev) ev.preventDefault();
  const f = $("review"), out = $("review-result");
  const sel = selected;
  if (sel === null || saving) return;
  const decision = f.elements.decision.value;
  const body = { decision, note: f.elements.note.value };
  if (decision === "overrule") body.verdict = f.elements.verdict.value;
  // labels.js: the defect type and the painted mask, when given.
  if (window.vigilLabels) {
    try {
      Object.assign(body, window.vigilLabels.fields());
    } catch (e) {
      say(out, "not saved: " + e.message, true);
      return;
    }
  }
  setSaving(true);
  say(out, "saving…");
  let answer, late = null;
  try {
    late = await storedLate(sel);
    answer = late && sameReview(late, body) ? late : await postReview(sel, body);
  } catch (e) {
    if (e.kind === "refused") {
      say(out, "not saved: refused (" + e.status + "): " + e.message, true);
    } else {
      // vigild may still store it once it runs again: the retry looks.
      if (!unanswered || unanswered.inspection !== sel.inspection)
        unanswered = { inspection: sel.inspection, body: { ...body }, reviewIds: sel.reviewIds };
      say(out, "NOT saved: " + e.message + ". Your decision and note are kept: press Save " +
        "again once vigild answers" + (e.kind === "timeout"
        ? " (should vigild still store this one, the page finds it then and does not save it twice)"
        : "") + ".", true);
    }
    return;
  } finally {
    setSaving(false);
  }
  unanswered = null;
  const said = "saved: " + answer.decision + " → " + answer.verdict +
    (answer === late ? " (vigild stored it from the try that got no answer)"
      : late ? "; vigild also stored the earlier try that got no answer (see the history)" : "");
  // "saved" only once the panel and the list show the stored review, so
  // what the page says is what the log holds.
  if (selected && selected.inspection === sel.inspection)
    await openPart(sel.part, sel.inspection, "none");
  await refreshList();
  if (selected && selected.inspection === sel.inspection) say(out, said);
}

// The inspection whose bulk confirm got no answer ({ inspection }), or
// null: vigild may still store it once it runs again.
let bulkUnanswered = null;

// Whether sel is the inspection whose confirm got no answer and its latest
// review is now a confirm: vigild stored that try (or it was confirmed
// before), and sending it again would store a second.
async function confirmedLate(sel) {
  if (!bulkUnanswered || bulkUnanswered.inspection !== sel.inspection) return false;
  const reviews = (await getJSON(partURL(sel))).reviews || [];
  const latest = reviews.reduce((a, r) => (!a || r.id > a.id ? r : a), null);
  return !!latest && latest.decision === "confirm";
}

// Confirm every ticked row: one review each, the same token; stops at the
// first refusal (a wrong token refuses them all alike) or request that
// gets no answer. The button waits for the last answer.
async function confirmSelected() {
  const button = $("confirm-selected"), out = $("bulk-result");
  const rows = listRows().filter((tr) => checked.has(Number(tr.dataset.inspection)))
    .map((tr) => ({ part: Number(tr.dataset.part), inspection: Number(tr.dataset.inspection) }));
  if (!rows.length || button.dataset.busy) return;
  button.dataset.busy = "1";
  button.disabled = true;
  let done = 0, late = 0;
  say(out, "confirming " + rows.length + "…");
  try {
    for (const sel of rows) {
      try {
        if (await confirmedLate(sel)) late++;
        else await postReview(sel, { decision: "confirm", note: "" });
      } catch (e) {
        if (e.kind !== "refused") bulkUnanswered = { inspection: sel.inspection };
        say(out, "confirmed " + done + ", " + (e.kind === "refused"
          ? "refused (" + e.status + ") at part " + sel.part + ": " + e.message
          : "then NOT saved from part " + sel.part + " on: " + e.message + "; the rows still " +
            "ticked are not confirmed: press again once vigild answers"), true);
        await refreshList();
        return;
      }
      if (bulkUnanswered && bulkUnanswered.inspection === sel.inspection) bulkUnanswered = null;
      checked.delete(sel.inspection);
      done++;
    }
    await refreshList();
    if (selected && rows.some((r) => r.inspection === selected.inspection))
      await openPart(selected.part, selected.inspection, "none");
    say(out, "confirmed " + done + (done === 1 ? " part" : " parts") + (late
      ? " (" + late + " stored by vigild from the try that got no answer)" : ""));
  } finally {
    delete button.dataset.busy;
    updateBulk();
  }
}

// Move the open part by step rows in the list as shown (the first row
// when none is open).
function stepPart(step) {
  const rows = listRows();
  if (!rows.length) return;
  let i = selected ? rows.findIndex((tr) => Number(tr.dataset.inspection) === selected.inspection)
    : -1;
  i = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + step));
  openPart(Number(rows[i].dataset.part), Number(rows[i].dataset.inspection));
}

// A field being typed in, where a key is text (or the field's own).
const NOT_TEXT = ["checkbox", "radio", "range", "button", "submit", "reset", "color", "file"];
function typing(t) {
  return !!t && (t.isContentEditable || t.tagName === "TEXTAREA" ||
    (t.tagName === "INPUT" && !NOT_TEXT.includes(t.type)));
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  const open = selected !== null && !$("detail").hidden;
  // After o: choose the verdict with the arrow keys, Enter saves.
  if (ev.key === "Enter" && open && t === $("review").elements.verdict) {
    ev.preventDefault();
    submitReview();
    return;
  }
  // Esc closes from anywhere but a text field being typed in: after o the
  // focus is in the verdict list, a select, and Esc must still close.
  if (ev.key === "Escape" && open && !typing(t)) {
    ev.preventDefault();
    closePart();
    return;
  }
  // Typing in a field is typing, not a command.
  if (t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName)) &&
      !(t.type === "checkbox" || t.type === "radio")) return;
  switch (ev.key) {
  case "j": case "ArrowDown": stepPart(1); break;
  case "k": case "ArrowUp": stepPart(-1); break;
  case "c":
    // Not while a review is on its way: it would change the form the
    // person may need to send again.
    if (!open || saving) return;
    $("review").elements.decision.value = "confirm";
    submitReview();
    break;
  case "o":
    if (!open) return;
    $("review").elements.decision.value = "overrule";
    $("review").elements.verdict.focus();
    break;
  default:
    return;
  }
  ev.preventDefault();
}

// ---- the address's parameters ----

// The address's values (prefix + a field's name) into form's fields. A
// value a field cannot take (a select without that choice, a date and time
// field given anything else) is never dropped silently, which would show
// another view as if it were the one linked: each is returned as a message
// naming the parameter and what it takes, and the field keeps its default.
// Text fields take any text: the server judges those (a 400 naming the
// parameter). trends.js and plant.js use it for their own forms.
function formFromURL(form, prefix = "") {
  const q = new URLSearchParams(location.search);
  const bad = [];
  for (const el of form.elements) {
    const key = prefix + el.name;
    if (!el.name || !q.has(key)) continue;
    const given = q.get(key);
    const time = el.type === "datetime-local";
    // A date alone is its midnight, as the API reads it.
    const v = time && /^\d{4}-\d\d-\d\d$/.test(given) ? given + "T00:00" : given;
    // (A value no date and time field takes is not given to one: the
    // browser's console would say so too.)
    const fits = !time || v === "" ||
      /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,3})?)?$/.test(v);
    if (fits) el.value = v;
    if (fits && (el.tagName === "SELECT" ? el.value === v : v === "" || el.value !== "")) continue;
    let takes;
    if (el.tagName === "SELECT") {
      const opts = Array.from(el.options);
      takes = "one of " + opts.map((o) => o.value).filter((x) => x !== "").join(", ") +
        (opts.some((o) => o.value === "") ? " (or empty, for any)" : "");
      el.selectedIndex = Math.max(0, opts.findIndex((o) => o.defaultSelected));
    } else {
      takes = "a local date and time, 2026-12-06T05:15 or 2026-12-06T05:15:30, or a date, " +
        "2026-12-06";
      el.value = el.defaultValue;
    }
    bad.push(key + "=" + given + " in the address: " + key + " is " + takes);
  }
  return bad;
}

// Parameters of the address no part of the page reads: a mistyped one
// must not pass for a filter that is applied.
function unknownParameters() {
  const known = new Set(["open", "inspection"]);
  for (const el of $("filters").elements) if (el.name) known.add(el.name);
  const bad = [];
  for (const k of new Set(new URLSearchParams(location.search).keys())) {
    if (known.has(k) || k.startsWith("trends_") || k.startsWith("plant_")) continue;
    bad.push("unknown parameter " + k + " in the address (the list reads " +
      Array.from(known).join(", ") + "; the Trends view trends_*, the Plant view plant_*)");
  }
  return bad;
}

// The address's filters refused: no list at all, rather than another
// one that would pass for the view the link means.
function addressRefused(bad) {
  const err = $("list-error");
  say(err, "The address asks for what the page cannot show: " + bad.join("; ") +
    ". No list is shown until the filters are set right: change them and press Filter.", true);
  err.hidden = false;
  text($("list-count"), "no list: the address's filters are refused");
}

document.addEventListener("DOMContentLoaded", () => {
  $("review").elements.token.value = sessionStorage.getItem("vigil-token") || "";
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refreshList(); });
  $("review").addEventListener("submit", submitReview);
  $("list-more").addEventListener("click", showMore);
  $("d-close").addEventListener("click", () => closePart());
  $("select-all").addEventListener("change", () => {
    for (const tr of listRows()) {
      const id = Number(tr.dataset.inspection);
      if ($("select-all").checked) checked.add(id); else checked.delete(id);
      tr.querySelector("td.sel input").checked = $("select-all").checked;
    }
    updateBulk();
  });
  $("confirm-selected").addEventListener("click", confirmSelected);
  document.addEventListener("keydown", onKey);
  window.addEventListener("popstate", onHistory);
  // A tablet turned, a window resized: the charts follow their boxes.
  window.addEventListener("resize", () => {
    for (const u of Object.values(charts))
      u.setSize({ width: chartWidth(u.root.parentElement), height: u.height });
  });
  const redraw = () => shown.images.forEach(drawPart);
  $("d-heat-show").addEventListener("change", redraw);
  $("d-anomaly-show").addEventListener("change", redraw);
  $("d-heat-opacity").addEventListener("input", redraw);
  const bad = formFromURL($("filters")).concat(unknownParameters());
  const want = openFromURL(bad);
  $("charts-unavailable").hidden = chartsAvailable();
  if (bad.length) {
    addressRefused(bad);
  } else {
    refreshList();
    if (want) openPart(want.part, want.inspection, "none");
  }
  const pollStatus = unlessBusy(refreshStatus), pollHistory = unlessBusy(refreshHistory);
  pollStatus();
  pollHistory();
  setInterval(pollStatus, 2000);
  setInterval(pollHistory, 5000);
  // vigild answers again: a list left stale loads again (as a live
  // refresh: not while the person types in the filters).
  document.addEventListener("vigil-link-up", () => {
    if ($("table-wrap").classList.contains("stale")) refreshList({ live: true });
  });
  // Signed in (users.js): what the token may now read, again.
  document.addEventListener("vigil-signed-in", () => {
    pollStatus();
    pollHistory();
    if (appliedQuery !== null) refreshList();
    if (!bad.length && want && !selected) openPart(want.part, want.inspection, "none");
  });
});
