// The Plant view (app/review-plant.c): every station's state and the
// inspections of the plant's central database, filtered by site, line and
// station, with a central review from each row. Shown only when the server
// has [review] central (vigild --review-only at the plant office): GET
// /api/plant says; elsewhere the section stays hidden, and so it does while
// that is not known (reads need a token not given yet, vigild does not
// answer): a sign-in asks again. The filters live in
// the URL as plant_site, plant_line, plant_station and plant_verdict (a
// view to bookmark or send, as the page's other filters are), prefixed so
// that the log list's own filters (its station among them) never take them.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const section = $("plant");
  if (!section) return;

  const cell = (tr, text) => {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    tr.appendChild(td);
    return td;
  };
  const when = (us) => (us === null ? null : new Date(us / 1000).toLocaleString());
  const showError = (text) => {
    $("plant-error").textContent = text || "";
    $("plant-error").hidden = !text;
  };
  const answer = async (r) => {
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
    return body;
  };

  const URL_PREFIX = "plant_";

  function filters() {
    const f = new FormData($("plant-filters"));
    const q = new URLSearchParams();
    for (const [k, v] of f) if (v) q.set(k, v);
    return q;
  }

  // The filters into the URL's query, leaving the page's other keys be.
  function syncURL() {
    const q = new URLSearchParams(location.search);
    for (const el of $("plant-filters").elements) {
      if (!el.name) continue;
      q.delete(URL_PREFIX + el.name);
      if (el.value) q.set(URL_PREFIX + el.name, el.value);
    }
    const text = q.toString();
    history.replaceState(history.state, "",
      location.pathname + (text ? "?" + text : "") + location.hash);
  }

  async function loadStations() {
    const r = await fetch("/api/plant/stations", { cache: "no-store" });
    const body = await answer(r);
    const tbody = $("plant-stations").tBodies[0];
    tbody.replaceChildren();
    for (const s of body.stations) {
      const tr = document.createElement("tr");
      for (const v of [s.site, s.line, s.station, s.host, when(s.last_seen_us), s.backlog,
                       s.lag_s === null ? null : s.lag_s.toFixed(1), s.model_version,
                       s.rows_today,
                       s.yield_today === null ? null : (100 * s.yield_today).toFixed(1) + "%"])
        cell(tr, v);
      tr.title = "show this station's inspections";
      tr.addEventListener("click", () => {
        const form = $("plant-filters");
        form.elements.site.value = s.site;
        form.elements.line.value = s.line;
        form.elements.station.value = s.station;
        syncURL();
        loadInspections().catch((e) => showError(e.message));
      });
      tbody.appendChild(tr);
    }
  }

  // The row's controls wait for the answer: a double click, or a choice
  // made again on a slow link, stored the review twice.
  async function review(row, decision, verdict, controls) {
    if (controls.some((c) => c.disabled)) return;
    for (const c of controls) c.disabled = true;
    try {
      const r = await fetch("/api/plant/review", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ site: row.site, line: row.line, station: row.station,
                               local_id: row.local_id, decision, verdict,
                               note: $("plant-note").value || null }),
      });
      await answer(r);
    } finally {
      for (const c of controls) c.disabled = false;
    }
    await loadInspections();
  }

  async function loadInspections() {
    showError("");
    const query = filters().toString();
    const r = await fetch("/api/plant/inspections?" + query, { cache: "no-store" });
    const body = await answer(r);
    const tbody = $("plant-inspections").tBodies[0];
    tbody.replaceChildren();
    for (const row of body.inspections) {
      const tr = document.createElement("tr");
      tr.dataset.key = [row.site, row.line, row.station, row.local_id].join("/");
      for (const v of [row.site, row.line, row.station, row.local_id, row.part_id,
                       when(row.t_us), row.verdict, row.class,
                       row.score === null ? null : row.score.toFixed(3),
                       row.review ? `${row.review} → ${row.review_verdict} (${row.review_origin})`
                                  : null])
        cell(tr, v);
      const td = cell(tr, "");
      const confirm = document.createElement("button");
      confirm.type = "button";
      confirm.textContent = "confirm";
      confirm.addEventListener("click", () => review(row, "confirm", null, controls)
        .catch((e) => showError(e.message)));
      const overrule = document.createElement("select");
      const controls = [confirm, overrule];
      overrule.setAttribute("aria-label", "overrule to");
      for (const v of ["", "accept", "reject", "marginal"]) {
        const o = document.createElement("option");
        o.value = v;
        o.textContent = v ? "overrule: " + v : "overrule…";
        overrule.appendChild(o);
      }
      // A refused overrule goes back to "overrule…": the select must not
      // show a verdict that was not saved.
      overrule.addEventListener("change", () => overrule.value &&
        review(row, "overrule", overrule.value, controls).catch((e) => {
          overrule.value = "";
          showError(e.message);
        }));
      td.append(confirm, " ", overrule);
      tbody.appendChild(tr);
    }
    $("plant-count").textContent = body.inspections.length + " inspection(s), newest first";
    $("plant-count").dataset.query = query;  // which filters the list shows
  }

  // The address's plant_* values the form cannot take (review.js's
  // formFromURL): said, and no list until the filters are set.
  let addressBad = [];
  let known = false;  // /api/plant answered

  // A station's page has no central database: ask before asking for it.
  async function load() {
    let here;
    try {
      here = await answer(await fetch("/api/plant", { cache: "no-store" }));
    } catch (e) {
      return;  // not known yet: hidden, asked again at the next sign-in
    }
    known = true;
    section.hidden = !here.central;
    if (!here.central) return;
    try {
      await loadStations();
      if (addressBad.length)
        showError("The address asks for what the Plant view cannot show: " +
          addressBad.join("; ") + ". Set the filters and press Show.");
      else
        await loadInspections();
    } catch (e) {
      showError(e.message);
    }
  }

  $("plant-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    addressBad = [];
    syncURL();
    loadInspections().catch((e) => showError(e.message));
  });
  window.addEventListener("load", () => {
    addressBad = formFromURL($("plant-filters"), URL_PREFIX);
    load();
  });
  document.addEventListener("vigil-signed-in", load);
  // vigild answering again (review.js): asked again if it never said.
  document.addEventListener("vigil-link-up", () => known || load());
})();
