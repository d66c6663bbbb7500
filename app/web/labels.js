// Labels worth training on (issue 23): the defect type of a review, from
// GET /api/classes (the model package's classes and the plant's own list),
// and the region of the defect painted on the part's image at full
// resolution (box, brush, erase; zoom and pan), sent with the review as a
// 0/255 PNG mask of the image's size. review.js calls vigilLabels.open()
// when a part opens and vigilLabels.fields() when a review is saved; all
// else lives here.
"use strict";

window.vigilLabels = (() => {
  const el = (id) => document.getElementById(id);
  const st = {
    img: null,          // the part's image (full resolution), or null
    mask: null,         // canvas of the image's size: white where painted
    tint: null,         // the mask in red, for drawing over the image
    painted: false,     // anything painted since the part was opened
    scale: 1, ox: 0, oy: 0,  // view: screen = image * scale + offset (CSS px)
    drag: null,         // the pointer gesture under way
    pointers: new Map(),  // pointerId -> [clientX, clientY] of those down
    pinch: null,        // two fingers down: [distance, midpoint] last seen
    maxMaskBytes: 1 << 20,
    part: null,
    inspection: null,   // the part's inspection open (a part id may name two)
  };

  // ---- the defect types ----

  // Asked again on each part opened until it answers: with [review]
  // read_requires_token it needs the token the user may enter later.
  let classesLoaded = false;
  async function loadClasses() {
    const sel = el("lb-type");
    let c;
    if (classesLoaded) return;
    try {
      const r = await fetch("/api/classes", { cache: "no-store" });
      if (!r.ok) return;
      c = await r.json();
    } catch (e) {
      return;  // an older vigild: no types offered, the review still works
    }
    if (classesLoaded) return;
    classesLoaded = true;
    st.maxMaskBytes = c.max_mask_bytes || st.maxMaskBytes;
    const seen = new Set();
    for (const [label, list] of [["surface (package)", c.surface], ["vibration (package)", c.vibration],
      ["plant", c.plant]]) {
      const names = (list || []).filter((n) => !seen.has(n));
      if (!names.length) continue;
      const g = document.createElement("optgroup");
      g.label = label;
      for (const n of names) {
        seen.add(n);
        const o = document.createElement("option");
        o.value = o.textContent = n;
        g.append(o);
      }
      sel.append(g);
    }
  }

  // ---- view: zoom and pan ----

  function fit() {
    const c = el("lb-canvas");
    if (!st.img) return;
    const w = c.clientWidth, h = c.clientHeight;
    st.scale = Math.min(w / st.img.naturalWidth, h / st.img.naturalHeight);
    st.ox = (w - st.img.naturalWidth * st.scale) / 2;
    st.oy = (h - st.img.naturalHeight * st.scale) / 2;
    draw();
  }

  // Zooms by factor about the screen point (x, y), which stays put.
  function zoom(factor, x, y) {
    const c = el("lb-canvas");
    if (x === undefined) { x = c.clientWidth / 2; y = c.clientHeight / 2; }
    const s = Math.min(64, Math.max(0.05, st.scale * factor));
    st.ox = x - (x - st.ox) * (s / st.scale);
    st.oy = y - (y - st.oy) * (s / st.scale);
    st.scale = s;
    draw();
  }

  function draw() {
    const c = el("lb-canvas");
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(c.clientWidth * dpr), h = Math.round(c.clientHeight * dpr);
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const ctx = c.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#333";
    ctx.fillRect(0, 0, w, h);
    el("lb-zoom").textContent = Math.round(st.scale * 100) + " %";
    if (!st.img) return;
    ctx.setTransform(dpr * st.scale, 0, 0, dpr * st.scale, dpr * st.ox, dpr * st.oy);
    // Zoomed in, a pixel is a square: what is painted is what is stored.
    ctx.imageSmoothingEnabled = st.scale < 1;
    ctx.drawImage(st.img, 0, 0);
    ctx.globalAlpha = Number(el("lb-opacity").value) / 100;
    ctx.drawImage(st.tint, 0, 0);
    ctx.globalAlpha = 1;
    const d = st.drag;
    if (d && d.tool === "box") {
      const r = boxRect(d.x0, d.y0, d.x1, d.y1);
      ctx.strokeStyle = "#ff0";
      ctx.lineWidth = 1 / st.scale;
      ctx.strokeRect(r.x, r.y, r.w, r.h);
    }
  }

  // ---- painting, in image coordinates ----

  function toImage(ev) {
    const r = el("lb-canvas").getBoundingClientRect();
    return [(ev.clientX - r.left - st.ox) / st.scale, (ev.clientY - r.top - st.oy) / st.scale];
  }

  // The whole image pixels a box from (x0, y0) to (x1, y1) covers.
  function boxRect(x0, y0, x1, y1) {
    const x = Math.floor(Math.min(x0, x1)), y = Math.floor(Math.min(y0, y1));
    return { x, y, w: Math.floor(Math.max(x0, x1)) + 1 - x, h: Math.floor(Math.max(y0, y1)) + 1 - y };
  }

  function retint() {
    const t = st.tint.getContext("2d");
    t.globalCompositeOperation = "copy";
    t.drawImage(st.mask, 0, 0);
    t.globalCompositeOperation = "source-in";
    t.fillStyle = "#f00";
    t.fillRect(0, 0, st.tint.width, st.tint.height);
    t.globalCompositeOperation = "source-over";
  }

  function paint(fn, erase) {
    const m = st.mask.getContext("2d");
    m.globalCompositeOperation = erase ? "destination-out" : "source-over";
    m.fillStyle = m.strokeStyle = "#fff";
    fn(m);
    m.globalCompositeOperation = "source-over";
    if (!erase) st.painted = true;
    retint();
    draw();
  }

  function stroke(x0, y0, x1, y1, erase) {
    const size = Number(el("lb-size").value);
    paint((m) => {
      m.lineWidth = size;
      m.lineCap = m.lineJoin = "round";
      m.beginPath();
      m.moveTo(x0, y0);
      m.lineTo(x1, y1);
      m.stroke();
    }, erase);
  }

  function tool() {
    return el("lb-tools").querySelector("input[name=lb-tool]:checked").value;
  }

  // Two pointers (fingers on a tablet) pinch: zoom by the change of their
  // distance about their midpoint, and pan with the midpoint.
  function pinchState() {
    const [a, b] = [...st.pointers.values()];
    const r = el("lb-canvas").getBoundingClientRect();
    return [Math.hypot(a[0] - b[0], a[1] - b[1]),
      [(a[0] + b[0]) / 2 - r.left, (a[1] + b[1]) / 2 - r.top]];
  }

  function onDown(ev) {
    if (!st.img) return;
    ev.preventDefault();
    st.pointers.set(ev.pointerId, [ev.clientX, ev.clientY]);
    if (st.pointers.size === 2) {
      // A second finger turns the gesture into a pinch: what the first
      // one painted meanwhile is taken back.
      const d = st.drag;
      if (d && d.before) {
        st.mask.getContext("2d").putImageData(d.before, 0, 0);
        st.painted = d.paintedBefore;
        retint();
      }
      st.drag = null;
      st.pinch = pinchState();
      draw();
      return;
    }
    if (st.pointers.size > 2 || st.pinch) return;
    try {
      el("lb-canvas").setPointerCapture(ev.pointerId);
    } catch (e) { /* a pointer the browser no longer tracks */ }
    // The middle or right button pans whatever the tool.
    const t = ev.button === 1 || ev.button === 2 ? "pan" : tool();
    const [x, y] = toImage(ev);
    st.drag = { tool: t, x0: x, y0: y, x1: x, y1: y, sx: ev.clientX, sy: ev.clientY };
    if (ev.pointerType === "touch" && t !== "pan") {
      st.drag.before = st.mask.getContext("2d").getImageData(0, 0, st.mask.width, st.mask.height);
      st.drag.paintedBefore = st.painted;
    }
    if (t === "brush" || t === "erase") stroke(x, y, x, y, t === "erase");
  }

  function onMove(ev) {
    if (st.pointers.has(ev.pointerId)) st.pointers.set(ev.pointerId, [ev.clientX, ev.clientY]);
    if (st.pinch && st.pointers.size === 2) {
      const [dist, mid] = pinchState(), [dist0, mid0] = st.pinch;
      st.ox += mid[0] - mid0[0];
      st.oy += mid[1] - mid0[1];
      if (dist0 > 0 && dist > 0) zoom(dist / dist0, mid[0], mid[1]);
      else draw();
      st.pinch = [dist, mid];
      return;
    }
    const d = st.drag;
    if (!d) return;
    const [x, y] = toImage(ev);
    if (d.tool === "pan") {
      st.ox += ev.clientX - d.sx;
      st.oy += ev.clientY - d.sy;
      d.sx = ev.clientX;
      d.sy = ev.clientY;
      draw();
    } else if (d.tool === "box") {
      d.x1 = x;
      d.y1 = y;
      draw();
    } else {
      stroke(d.x1, d.y1, x, y, d.tool === "erase");
      d.x1 = x;
      d.y1 = y;
    }
  }

  function onUp(ev) {
    st.pointers.delete(ev.pointerId);
    if (st.pinch) {
      // The pinch ends when every finger is up; the one left paints nothing.
      if (!st.pointers.size) st.pinch = null;
      return;
    }
    const d = st.drag;
    if (!d) return;
    st.drag = null;
    if (d.tool === "box") {
      const [x, y] = toImage(ev);
      const r = boxRect(d.x0, d.y0, x, y);
      paint((m) => m.fillRect(r.x, r.y, r.w, r.h), el("lb-box-erase").checked);
    }
    draw();
  }

  function clear() {
    if (!st.mask) return;
    st.mask.getContext("2d").clearRect(0, 0, st.mask.width, st.mask.height);
    st.painted = false;
    retint();
    draw();
  }

  // The region of the inspection's latest review, into the editor (to
  // correct it, or to keep it with a new review): white where it is set.
  async function loadSaved() {
    const id = st.part;
    let img;
    try {
      img = await window.loadImage("/api/parts/" + encodeURIComponent(id) + "/mask?inspection=" +
        encodeURIComponent(st.inspection) + "&t=" + Date.now());
    } catch (e) {
      el("lb-error").textContent = "cannot load the saved region";
      return;
    }
    if (st.part !== id || !st.mask) return;
    const c = document.createElement("canvas");
    c.width = st.mask.width;
    c.height = st.mask.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height);
    for (let i = 0; i < px.data.length; i += 4) {
      px.data[i + 3] = px.data[i] >= 128 ? 255 : 0;
      px.data[i] = px.data[i + 1] = px.data[i + 2] = 255;
    }
    ctx.putImageData(px, 0, 0);
    paint((m) => m.drawImage(c, 0, 0), false);
  }

  // ---- what review.js calls ----

  // A part was opened (d: GET /api/parts/ID): a fresh label for it.
  async function open(id, d) {
    st.part = id;
    st.inspection = d.inspection ? d.inspection.id : null;
    st.img = st.mask = st.tint = null;
    loadClasses();
    st.painted = false;
    el("lb-type").value = "";
    el("lb-error").textContent = "";
    // What the latest review stored, said here; the form itself starts
    // empty so that one click on Save never copies a label by mistake.
    const r = d.inspection || {};
    el("lb-saved").hidden = !r.review_defect_type && !r.review_mask;
    el("lb-saved").firstElementChild.textContent = "saved label: " +
      (r.review_defect_type || "no type") + (r.review_mask ? ", a region" : ", no region");
    el("lb-load").hidden = !r.review_mask;
    const image = (d.media || []).find((m) => m.kind === "image");
    el("lb-paint").hidden = !image;
    if (!image) { draw(); return; }
    let img;
    try {
      // review.js's loadImage (with the token where users.js is loaded).
      img = await window.loadImage(image.url);
    } catch (e) {
      el("lb-error").textContent = "cannot load the image to paint on";
      return;
    }
    if (st.part !== id) return;  // another part was opened meanwhile
    st.img = img;
    for (const k of ["mask", "tint"]) {
      st[k] = document.createElement("canvas");
      st[k].width = img.naturalWidth;
      st[k].height = img.naturalHeight;
    }
    el("lb-size-px").textContent = img.naturalWidth + "×" + img.naturalHeight + " px";
    fit();
  }

  // The label members of the review's JSON; throws when the mask is over
  // the server's limit (the review is then not sent).
  function fields() {
    const out = {};
    if (el("lb-type").value) out.defect_type = el("lb-type").value;
    if (st.img && st.painted) {
      const c = document.createElement("canvas");
      c.width = st.mask.width;
      c.height = st.mask.height;
      const ctx = c.getContext("2d");
      ctx.fillStyle = "#000";  // opaque: 0 where nothing is painted
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.drawImage(st.mask, 0, 0);
      out.mask = c.toDataURL("image/png");
      if (out.mask.length > st.maxMaskBytes)
        throw new Error("the painted mask is too large to send");
    }
    return out;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const c = el("lb-canvas");
    c.addEventListener("pointerdown", onDown);
    c.addEventListener("pointermove", onMove);
    c.addEventListener("pointerup", onUp);
    c.addEventListener("pointercancel", (ev) => {
      st.pointers.delete(ev.pointerId);
      if (!st.pointers.size) st.pinch = null;
      st.drag = null;
      draw();
    });
    c.addEventListener("contextmenu", (ev) => ev.preventDefault());
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = c.getBoundingClientRect();
      zoom(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    el("lb-zoom-in").addEventListener("click", () => zoom(2));
    el("lb-zoom-out").addEventListener("click", () => zoom(0.5));
    el("lb-zoom-fit").addEventListener("click", fit);
    el("lb-zoom-1").addEventListener("click", () => zoom(1 / st.scale));
    el("lb-clear").addEventListener("click", clear);
    el("lb-load").addEventListener("click", loadSaved);
    el("lb-opacity").addEventListener("input", draw);
    window.addEventListener("resize", draw);
    loadClasses();
    draw();
  });

  // view() is for tests and tools that need to know where an image pixel is.
  return { open, fields, view: () => ({ scale: st.scale, ox: st.ox, oy: st.oy }),
    painted: () => st.painted };
})();
