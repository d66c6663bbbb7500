// Trends and quality alarms on the review page (issue 23): the alarm
// banner from /api/status, and yield and reject rate per hour or shift
// from /api/trends with the p-chart of the reject proportion (centre line,
// 3-sigma limits per bucket, out-of-control buckets marked). Charts need
// uPlot; the table below them always carries every figure as text. Works
// in --review-only (no line: no banner, the trends come from the log).
// The banner also says when the line is learning (issue 21). The view's
// settings are in the address (trends_bucket, trends_since, trends_until,
// trends_baseline): Show puts them there, a link opens the same view.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pct = (v, d = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(d) + " %");
  const trendCharts = {};

  // ---- the alarm banner ----

  async function refreshAlarms() {
    const banner = $("alarm-banner");
    let s;
    try {
      const r = await fetch("/api/status", { cache: "no-store" });
      if (!r.ok) return;
      s = await r.json();
    } catch (e) {
      // review.js's bar says the server is unreachable; the banner is as
      // it was when it last answered, and says so.
      banner.classList.add("stale");
      return;
    }
    banner.classList.remove("stale");
    const active = (s.alarms && s.alarms.active) || [];
    banner.textContent = "";
    active.forEach((a) => {
      const p = document.createElement("p");
      const b = document.createElement("b");
      b.textContent = "Quality alarm: " + a.kind.replace("_", " ");
      p.appendChild(b);
      p.appendChild(document.createTextNode(" since " + a.since + ". " + a.message));
      p.dataset.kind = a.kind;
      banner.appendChild(p);
    });
    // Learning mode ([model] learn) passes every part the model judges:
    // whoever looks at the page must see that the line is not inspecting.
    if (s.learning) {
      const p = document.createElement("p");
      const b = document.createElement("b");
      b.textContent = "Learning mode:";
      p.appendChild(b);
      p.appendChild(document.createTextNode(
        " every part the model judges is accepted and kept for training;" +
        " its own verdict is only logged. Fail-safe rejects stay rejects."));
      p.dataset.kind = "learning";
      banner.appendChild(p);
    }
    banner.hidden = active.length === 0 && !s.learning;
  }

  // ---- trends ----

  function trendsQuery() {
    const f = $("trends-form").elements;
    const q = new URLSearchParams();
    q.set("bucket", f.bucket.value);
    if (f.since.value) q.set("since", f.since.value);
    if (f.until.value) q.set("until", f.until.value);
    if (f.baseline.value) q.set("baseline", f.baseline.value);
    return q.toString();
  }

  // Out-of-control points of the reject series, drawn as red rings.
  const flagPlugin = {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx, xs = u.data[0], ps = u.data[1];
        ctx.save();
        ctx.strokeStyle = "#c00";
        ctx.lineWidth = 2 * devicePixelRatio;
        (u._flags || []).forEach((i) => {
          if (ps[i] === null) return;
          const x = u.valToPos(xs[i], "x", true), y = u.valToPos(ps[i], "y", true);
          ctx.beginPath();
          ctx.arc(x, y, 5 * devicePixelRatio, 0, 2 * Math.PI);
          ctx.stroke();
        });
        ctx.restore();
      },
    },
  };

  // Percentages from 0: a fixed floor, and a top that exists even when a
  // view holds one non-empty bucket (uPlot finds no range in one point).
  const percentRange = (u, min, max) =>
    [0, max === null || !isFinite(max) ? 10 : Math.min(100, Math.max(1, max * 1.15))];

  function chart(name, el, title, series, data, flags) {
    if (typeof window.uPlot !== "function") return;
    const width = Math.max(300, Math.min(el.parentElement.clientWidth - 20, 900));
    if (!trendCharts[name]) {
      trendCharts[name] = new window.uPlot({
        title, width, height: 200,
        scales: { x: { time: true }, y: { range: percentRange } },
        axes: [{}, { label: "%" }],
        series: [{ label: "time" }].concat(series),
        plugins: [flagPlugin],
      }, data, el);
      // Read by the first draw, which uPlot defers (a redraw() now would
      // run before its scales exist and leave the chart empty).
      trendCharts[name]._flags = flags || [];
    } else {
      trendCharts[name]._flags = flags || [];
      trendCharts[name].setData(data);
    }
  }

  function fillTable(t) {
    const head = $("trends-table").tHead.rows[0];
    head.querySelectorAll("th.cls").forEach((th) => th.remove());
    t.classes.forEach((c) => {
      const th = document.createElement("th");
      th.textContent = c;
      th.className = "cls";
      head.insertBefore(th, head.lastElementChild);
    });
    const body = $("trends-table").tBodies[0];
    body.textContent = "";
    // Newest first; empty buckets are left out of the table (the charts
    // show them as gaps).
    t.buckets.slice().reverse().filter((b) => b.parts > 0).forEach((b) => {
      const tr = body.insertRow();
      const cells = [b.label, String(b.parts), pct(b.yield), pct(b.reject_rate, 2),
        pct(b.ucl, 2), String(b.marginal)].concat(t.classes.map((c) => String(b.classes[c])));
      cells.push(b.out_of_control ? "out of control" : "");
      cells.forEach((v, i) => {
        const td = tr.insertCell();
        td.textContent = v;
        if (i > 0 && i < cells.length - 1) td.className = "num";
      });
      if (b.out_of_control) tr.className = "ooc";
      tr.dataset.label = b.label;
    });
  }

  // The address's settings refused (formFromURL): no view is shown, rather
  // than the default one passing for the view the link means.
  let addressBad = [];

  // The settings into the address (the page's other parameters stay).
  function syncURL() {
    const q = new URLSearchParams(location.search);
    for (const el of $("trends-form").elements) {
      if (!el.name) continue;
      q.delete("trends_" + el.name);
      if (el.value) q.set("trends_" + el.name, el.value);
    }
    const text = q.toString();
    history.replaceState(history.state, "",
      location.pathname + (text ? "?" + text : "") + location.hash);
  }

  // The figures shown are from before (vigild did not answer) or not.
  function markStale(on) {
    for (const id of ["trends-summary", "trends-charts", "trends-table-wrap"])
      $(id).classList.toggle("stale", on);
  }

  function clearView() {
    $("trends-summary").textContent = "";
    $("trends-table").tBodies[0].textContent = "";
    $("trends-charts").hidden = true;
  }

  async function refreshTrends() {
    const err = $("trends-error");
    if (addressBad.length) {
      err.textContent = "Trends: the address asks for what the view cannot show: " +
        addressBad.join("; ") + ". Set the view and press Show.";
      err.hidden = false;
      clearView();
      return;
    }
    let t;
    try {
      t = await answerJSON(await fetch("/api/trends?" + trendsQuery(), { cache: "no-store" }));
    } catch (e) {
      // Refused (a bad setting, no token): no figures of another view.
      // Unanswered: the figures shown are from before, and marked so.
      err.textContent = "Trends: " + e.message +
        (e.kind === "refused" ? "" : "; the figures below are from before");
      err.hidden = false;
      if (e.kind === "refused") clearView();
      else markStale(true);
      return;
    }
    markStale(false);
    $("trends-charts").hidden = false;
    err.hidden = true;
    const flags = [];
    t.buckets.forEach((b, i) => { if (b.out_of_control) flags.push(i); });
    $("trends-summary").textContent =
      `${t.buckets.length} ${t.bucket === "shift" ? "shifts" : "hours"}; centre line p̄ ` +
      `${pct(t.p_bar, 2)} over ${t.baseline_parts} parts of the first ${t.baseline_buckets} ` +
      `buckets; ${flags.length} out of control` +
      (flags.length ? ": " + flags.map((i) => t.buckets[i].label).join(", ") : "");
    $("trends-pchart").dataset.outOfControl = flags.map((i) => t.buckets[i].label).join("|");
    const xs = t.buckets.map((b) => b.start_us / 1e6);
    const p100 = (k) => t.buckets.map((b) => (b[k] === null ? null : 100 * b[k]));
    const centre = t.buckets.map(() => (t.p_bar === null ? null : 100 * t.p_bar));
    chart("p", $("trends-pchart"), "p-chart: reject rate", [
      { label: "reject %", stroke: "#b00", width: 1.5, points: { show: true } },
      { label: "UCL", stroke: "#888", dash: [5, 4] },
      { label: "p̄", stroke: "#444" },
      { label: "LCL", stroke: "#888", dash: [5, 4] },
    ], [xs, p100("reject_rate"), p100("ucl"), centre, p100("lcl")], flags);
    chart("yield", $("trends-yield"), "yield and defect rate", [
      { label: "yield %", stroke: "#26a", width: 1.5, points: { show: true } },
      { label: "reject + marginal %", stroke: "#a62", width: 1.5, points: { show: true } },
    ], [xs, p100("yield"), p100("defect_rate")]);
    fillTable(t);
  }

  document.addEventListener("DOMContentLoaded", () => {
    // trends_bucket, trends_since, ... in the URL make a view a link
    // (review.js's formFromURL: a value the form cannot take is said).
    addressBad = formFromURL($("trends-form"), "trends_");
    $("trends-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      addressBad = [];
      syncURL();
      refreshTrends();
    });
    const pollAlarms = unlessBusy(refreshAlarms), pollTrends = unlessBusy(refreshTrends);
    pollAlarms();
    pollTrends();
    setInterval(pollAlarms, 2000);
    setInterval(pollTrends, 60000);
    // Signed in (users.js): with read_requires_token the trends need it;
    // vigild answering again (review.js): the figures left stale.
    document.addEventListener("vigil-signed-in", () => {
      pollAlarms();
      pollTrends();
    });
    document.addEventListener("vigil-link-up", () => {
      if ($("trends-table-wrap").classList.contains("stale")) pollTrends();
    });
  });
})();
