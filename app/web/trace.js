// Tracing escapes on the review page: the date-range, shift, job, model
// and station filters (their choices from /api/shifts and /api/facets), the
// filter state in the page's URL so that a filtered view is a link, the
// CSV of the view, and the escape report (/api/escapes, POST
// /api/parts/ID/escape). Uses review.js's filterQuery, openPart, selected,
// partURL, text, getJSON and loadImage; its requests carry the token
// through users.js's fetch. Every value from the log is put on the page as
// text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("filters");
  const selects = ["shift", "job", "model", "station"];
  const urlQuery = new URLSearchParams(location.search);

  // review.js restores the URL's filters into the form at DOMContentLoaded,
  // before the choices below are fetched: a select takes a value only
  // from an option it has, so the URL's own values become options now.
  for (const name of selects) {
    const v = urlQuery.get(name);
    if (v) addOption(form.elements[name], v, v);
  }

  function addOption(select, value, label) {
    for (const o of select.options) if (o.value === value) return o;
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    select.append(o);
    return o;
  }

  // The CSV of the view: the same filters without the list's row limit.
  function csvQuery() {
    const q = new URLSearchParams(filterQuery());
    q.delete("limit");
    return q.toString();
  }

  // With a token (a server with read_requires_token) the CSV is fetched
  // with it and saved from memory; a plain link cannot send the header.
  async function downloadCSV(ev) {
    const t = token();
    if (!t) return;
    ev.preventDefault();
    const err = $("list-error");
    let r;
    try {
      r = await fetch($("trace-csv").href, { headers: { "Authorization": "Bearer " + t } });
    } catch (e) {
      err.hidden = false;
      say(err, "CSV not downloaded: " + e.message, true);
      return;
    }
    if (!r.ok) {
      err.hidden = false;
      say(err, "CSV: " + r.status + " " + r.statusText, true);
      return;
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = "vigil-inspections.csv";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }

  function syncLinks() {
    const q = csvQuery();
    $("trace-csv").href = "/api/inspections.csv" + (q ? "?" + q : "");
  }

  // The filters as the URL's query: a view to bookmark or send. The
  // address's other parameters (the Trends and Plant views' own, the open
  // part) are theirs: kept.
  function syncURL() {
    const q = new URLSearchParams(location.search);
    for (const el of form.elements) if (el.name) q.delete(el.name);
    for (const [k, v] of new URLSearchParams(filterQuery())) q.set(k, v);
    const text = q.toString();
    history.replaceState(history.state, "",
      location.pathname + (text ? "?" + text : "") + location.hash);
    syncLinks();
  }

  let choicesLoaded = false;

  async function fillChoices() {
    try {
      const [shifts, facets] = await Promise.all([getJSON("/api/shifts?n=21"),
        getJSON("/api/facets")]);
      for (const name of shifts.names)
        addOption(form.elements.shift, name, "every " + name);
      for (const o of shifts.occurrences) {
        const start = o.start.slice(11, 16), end = o.end.slice(11, 16);
        addOption(form.elements.shift, o.label, o.label + " (" + start + "–" + end + ")");
      }
      for (const f of facets.job) addOption(form.elements.job, f.value, "job " + f.value);
      for (const f of facets.model_version) addOption(form.elements.model, f.value, f.value);
      for (const f of facets.station) addOption(form.elements.station, f.value, f.value);
      choicesLoaded = true;
    } catch (e) {
      // Before a sign-in (read_requires_token) the list says the same;
      // the choices come once signed in.
      if (e.status === 401) return;
      const err = $("list-error");
      err.hidden = false;
      say(err, "filter choices: " + e.message, true);
    }
  }

  // ---- the escape report ----

  function token() {
    const review = $("review");
    const t = review && review.elements.token ? review.elements.token.value.trim() : "";
    return t || sessionStorage.getItem("vigil-token") || "";
  }

  function cell(tr, value, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    text(td, value);
    tr.append(td);
  }

  function fmt(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
  }

  // What each kind of kept picture is called under it.
  const CAPTIONS = { image: "image", heatmap: "defect map", anomaly: "anomaly map" };

  // The escaped part's image with its defect map beside it, as kept, and
  // the good-only model's anomaly map (a fused or good-only package) when
  // it kept one.
  async function escapeMedia(box, partId, inspectionId) {
    try {
      // The inspection marked, not a later one of the same part id.
      const d = await getJSON(partURL({ part: partId, inspection: inspectionId }));
      const kept = (d.media || []).filter((m) => Object.hasOwn(CAPTIONS, m.kind));
      if (!kept.length) {
        const p = document.createElement("p");
        p.className = "note";
        text(p, "No image kept for this part.");
        box.append(p);
        return;
      }
      for (const m of kept) {
        const fig = document.createElement("figure");
        // review.js's loadImage (through users.js, with the token when the
        // server asks one for reads).
        const img = await loadImage(m.url);
        img.alt = m.kind + " of part " + partId;
        img.className = "trace-" + m.kind;
        const cap = document.createElement("figcaption");
        text(cap, CAPTIONS[m.kind] +
          (m.camera ? ", camera " + m.camera : ""));
        fig.append(img, cap);
        box.append(fig);
      }
    } catch (e) {
      const p = document.createElement("p");
      p.className = "error";
      text(p, "part " + partId + ": " + e.message);
      box.append(p);
    }
  }

  function neighbourTable(e) {
    const table = document.createElement("table");
    table.className = "trace-neighbours";
    const head = table.createTHead().insertRow();
    for (const h of ["", "part", "time", "station", "job", "model", "verdict", "score",
      "review"]) {
      const th = document.createElement("th");
      text(th, h);
      head.append(th);
    }
    const body = table.createTBody();
    const self = e.neighbours.findIndex((r) => r.id === e.inspection_id);
    e.neighbours.forEach((r, i) => {
      const tr = body.insertRow();
      tr.className = r.verdict + (r.id === e.inspection_id ? " trace-escaped" : "");
      tr.dataset.part = r.part_id;
      const pos = i - self;
      cell(tr, pos === 0 ? "escape" : (pos > 0 ? "+" : "") + pos, "num");
      cell(tr, r.part_id, "num");
      cell(tr, r.time, "");
      cell(tr, r.station, "");
      cell(tr, r.job, "num");
      cell(tr, r.model_version, "");
      cell(tr, r.verdict + (r.failsafe ? " (fail-safe)" : ""), "verdict");
      cell(tr, fmt(r.score, 3), "num");
      cell(tr, r.review ? r.review + " → " + r.review_verdict : "", "");
      tr.addEventListener("click", async () => {
        if (await openPart(r.part_id, r.id)) $("detail").scrollIntoView({ block: "start" });
      });
    });
    return table;
  }

  async function showEscapes() {
    const list = $("trace-escape-list");
    try {
      const data = await getJSON("/api/escapes?neighbours=3");
      list.replaceChildren();
      if (!data.escapes.length) {
        const p = document.createElement("p");
        p.className = "note";
        text(p, "No escapes reported.");
        list.append(p);
      }
      for (const e of data.escapes) {
        const art = document.createElement("article");
        art.className = "trace-escape";
        art.dataset.escape = e.id;
        art.dataset.part = e.part_id;
        const h = document.createElement("h3");
        text(h, "Escape " + e.id + ": part " + e.part_id);
        const p = document.createElement("p");
        p.className = "trace-note";
        text(p, e.note);
        const by = document.createElement("p");
        by.className = "note";
        text(by, "reported " + e.reported + " by " + (e.reporter || "–"));
        const media = document.createElement("div");
        media.className = "trace-media";
        art.append(h, p, by, media, neighbourTable(e));
        list.append(art);
        await escapeMedia(media, e.part_id, e.inspection_id);
      }
    } catch (err) {
      list.replaceChildren();
      const p = document.createElement("p");
      p.className = "error";
      text(p, "escapes: " + err.message);
      list.append(p);
    }
  }

  function setEscapesShown(on) {
    $("trace-escape-list").hidden = !on;
    $("trace-escapes-toggle").setAttribute("aria-expanded", String(on));
    text($("trace-escapes-toggle"), on ? "hide" : "show");
    const hash = on ? "#escapes" : "";
    history.replaceState(history.state, "", location.pathname + location.search + hash);
    if (on) showEscapes();
  }

  // An escape sent that got no answer ({ part, note }): vigild may still
  // store it once it runs again, so the retry looks for it first.
  let unanswered = null;

  // The escape of part with note that vigild stored from a try that got
  // no answer, or null.
  async function storedLate(part, note) {
    const u = unanswered;
    if (!u || u.part !== part || u.note !== note) return null;
    const data = await getJSON("/api/escapes?neighbours=0");
    return data.escapes.find((e) => String(e.part_id) === part && e.note === note) || null;
  }

  // The button waits for the answer: two clicks on a slow one stored the
  // escape twice.
  async function markEscape(ev) {
    ev.preventDefault();
    const f = $("trace-mark");
    const out = $("trace-mark-result");
    const button = f.querySelector("button[type=submit]");
    const part = f.elements.part.value.trim(), note = f.elements.note.value;
    if (button.disabled) return;
    button.disabled = true;
    say(out, "saving…");
    try {
      let answer = await storedLate(part, note);
      const late = !!answer;
      if (!answer) {
        // The part open is marked by its inspection's own id: a part id
        // the line used twice names a later inspection too, which is not
        // the one looked at. A part typed in is marked on its latest.
        const open = selected && String(selected.part) === part ? selected : { part };
        const r = await fetch(partURL(open, "/escape"), {
          method: "POST",
          headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
          body: JSON.stringify({ note, reporter: f.elements.reporter.value }),
        });
        answer = await answerJSON(r);
      }
      unanswered = null;
      f.elements.note.value = "";
      setEscapesShown(true);
      say(out, "saved: escape " + answer.id + " (part " + answer.part_id +
        (answer.inspection_id ? ", inspection " + answer.inspection_id : "") + ")" +
        (late ? ", stored by vigild from the try that got no answer" : ""));
    } catch (e) {
      if (e.kind === "refused") {
        say(out, "not saved: refused (" + e.status + "): " + e.message, true);
      } else {
        if (!unanswered) unanswered = { part, note };
        say(out, "NOT saved: " + e.message + ". The part and note are kept: press Mark as " +
          "escape again once vigild answers.", true);
      }
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    form.addEventListener("submit", syncURL);
    form.addEventListener("input", syncLinks);
    form.addEventListener("change", syncLinks);
    $("trace-mark").addEventListener("submit", markEscape);
    $("trace-csv").addEventListener("click", downloadCSV);
    $("trace-escapes-toggle").addEventListener("click",
      () => setEscapesShown($("trace-escape-list").hidden));
    // The open part is the one an escape is most likely marked on.
    new MutationObserver(() => {
      const part = $("d-part").textContent.trim();
      if (/^\d+$/.test(part)) $("trace-mark").elements.part.value = part;
    }).observe($("d-part"), { childList: true, characterData: true, subtree: true });
    syncLinks();
    fillChoices().then(syncLinks);
    if (location.hash === "#escapes") setEscapesShown(true);
    // Signed in (users.js): the choices and escapes the token may read;
    // vigild answering again: the choices it did not give at the start.
    document.addEventListener("vigil-signed-in", () => {
      fillChoices().then(syncLinks);
      if (!$("trace-escape-list").hidden) showEscapes();
    });
    document.addEventListener("vigil-link-up", () => {
      if (!choicesLoaded) fillChoices().then(syncLinks);
    });
  });
})();
