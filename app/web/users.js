// Who is signed in, and a part's review history (issue 23, "who did
// what"). Loaded after review.js and kept apart from it: it sees the page's
// requests through a wrapper around fetch, so review.js needs no hook.
//  - Every request to the server carries the signed-in token, so a server
//    with [review] read_requires_token serves the page's reads too; images
//    are fetched the same way (loadImage below) because an <img> cannot
//    send a header.
//  - The sign-in bar asks GET /api/whoami and says who the token is.
//  - Each GET /api/parts/ID answer fills the history table in the detail
//    panel: every review of the part, newest first.
//  - A sign-in that works tells the page ("vigil-signed-in" on document):
//    whatever needs the token to read (read_requires_token) loads again.
// Every value is put on the page as text, never as HTML.
"use strict";

(() => {
  const el = (id) => document.getElementById(id);
  const TOKEN_KEY = "vigil-token";  // the key review.js keeps the token under

  function token() {
    const f = el("review");
    const typed = f && f.elements.token ? f.elements.token.value.trim() : "";
    return typed || sessionStorage.getItem(TOKEN_KEY) || "";
  }

  const plainFetch = window.fetch.bind(window);
  window.fetch = async (input, init = {}) => {
    const url = typeof input === "string" ? input : input.url;
    const same = new URL(url, location.href).origin === location.origin;
    const headers = new Headers(init.headers || {});
    const t = token();
    if (same && t && !headers.has("Authorization")) headers.set("Authorization", "Bearer " + t);
    const r = await plainFetch(input, { ...init, headers });
    const path = new URL(url, location.href).pathname;
    if (r.ok && (!init.method || init.method === "GET") && /^\/api\/parts\/\d+$/.test(path))
      r.clone().json().then(showHistory, () => {});
    return r;
  };

  // review.js's loadImage, through fetch so that the token goes along.
  if (typeof window.loadImage === "function") {
    window.loadImage = async (url) => {
      const r = await window.fetch(url, { cache: "no-store" });
      if (!r.ok) throw new Error("cannot load " + url + " (" + r.status + ")");
      const src = URL.createObjectURL(await r.blob());
      try {
        return await new Promise((resolve, reject) => {
          const img = new Image();
          img.onload = () => resolve(img);
          img.onerror = () => reject(new Error("cannot load " + url));
          img.src = src;
        });
      } finally {
        URL.revokeObjectURL(src);
      }
    };
  }

  function setText(node, v) {
    node.textContent = v === null || v === undefined || v === "" ? "–" : String(v);
  }

  // ---- history ----

  function historyBox() {
    let box = el("users-history");
    if (box) return box;
    box = el("users-history-template").content.firstElementChild.cloneNode(true);
    const detail = el("detail");
    detail.insertBefore(box, el("review"));
    return box;
  }

  function showHistory(d) {
    const box = historyBox();
    const body = box.querySelector("tbody");
    body.replaceChildren();
    const reviews = d.reviews || [];
    box.querySelector(".users-none").hidden = reviews.length > 0;
    box.querySelector("table").hidden = reviews.length === 0;
    for (const r of reviews) {
      const tr = document.createElement("tr");
      for (const v of [r.time, r.reviewer, r.decision, r.verdict, r.note]) {
        const td = document.createElement("td");
        setText(td, v);
        tr.append(td);
      }
      body.append(tr);
    }
  }

  // ---- sign in ----

  async function whoami(t) {
    const r = await plainFetch("/api/whoami", {
      cache: "no-store", headers: t ? { Authorization: "Bearer " + t } : {},
    });
    return answerJSON(r);  // review.js: an error says whether vigild answered
  }

  function showWho(w) {
    const who = el("users-who");
    if (w.signed_in)
      setText(who, "signed in as " + (w.name || "the shared token") + " (" + w.role + ")");
    else
      setText(who, w.auth === "none" ? "read-only server: no sign-in" :
        "not signed in" + (w.read_requires_token ? ": reading needs a token" : ""));
    // With a users file the server names the reviewer (and an escape's
    // reporter) itself: a field it ignores is not offered.
    for (const [form, name] of [["review", "reviewer"], ["trace-mark", "reporter"]]) {
      const f = el(form);
      if (f && f.elements[name] && f.elements[name].closest("label"))
        f.elements[name].closest("label").hidden = w.auth === "users";
    }
  }

  async function signIn(ev) {
    if (ev) ev.preventDefault();
    const t = el("users-token").value.trim();
    try {
      const w = await whoami(t);
      sessionStorage.setItem(TOKEN_KEY, t);
      const f = el("review");
      if (f && f.elements.token) f.elements.token.value = t;
      showWho(w);
      document.dispatchEvent(new CustomEvent("vigil-signed-in"));
    } catch (e) {
      setText(el("users-who"), (e.kind === "refused" ? "sign-in refused: " : "not signed in: ") +
        e.message);
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    el("users-signin").addEventListener("submit", signIn);
    const t = sessionStorage.getItem(TOKEN_KEY) || "";
    el("users-token").value = t;
    try {
      showWho(await whoami(t));
    } catch (e) {
      setText(el("users-who"), (e.kind === "refused" ? "stored token refused: "
        : "who is signed in is unknown: ") + e.message);
    }
    // A review saved from the form (its own token field) may change who
    // is signed in; the answer names the reviewer.
    const f = el("review");
    if (f) f.addEventListener("submit", () => {
      setTimeout(async () => {
        try { showWho(await whoami(token())); } catch (e) { /* shown on save */ }
      }, 0);
    });
  });
})();
