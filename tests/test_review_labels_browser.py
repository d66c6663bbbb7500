#!/usr/bin/python3
"""Labelling on the review page in headless Debian chromium (playwright-core,
npm), over a line run by vigil-sim + vigild: choose a defect type offered
by /api/classes, paint a box, erase part of it with a box and draw a brush
stroke on the part's image, save; then zoom in (the + button and the
wheel), pan, paint again and save again. Each review's stored mask (a PNG
in the media folder) has the painted pixels exactly where they were
painted in image coordinates, and nothing elsewhere. Reads need the token
(read_requires_token), so every request of the labelling goes with it.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (`make web-test-deps`).

usage: test_review_labels_browser.py BUILD_DIR SOURCE_ROOT
"""
import json
import os
import shutil
import sqlite3
import sys

import cv2
import numpy as np

from linetest import Checks, Line, add_part_media, browser_tools, run_node_driver, workdir

build, root = sys.argv[1], sys.argv[2]
TOKEN = "labels-browser-token-7"
checks = Checks()
fail, check = checks.fail, checks.check

chromium, node_modules = browser_tools(build)

# Image coordinates are pixel indices; the driver aims at pixel centres.
DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, token, executablePath, partArg, plansArg] = process.argv.slice(2);
const part = Number(partArg), plans = JSON.parse(plansArg);
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  // Reads need the token too (read_requires_token): the types, the image
  // and the saved mask must go through the page's token-carrying fetch.
  await page.addInitScript((t) => sessionStorage.setItem("vigil-token", t), token);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url + "?part=" + part);
  await page.waitForSelector("#inspections tbody tr", { timeout: 15000 });
  const views = [];
  for (const plan of plans) {
    await page.click("#inspections tbody tr[data-part='" + part + "']");
    await page.waitForSelector("#lb-paint:not([hidden])");
    await page.waitForFunction(() => vigilLabels.view().scale > 0 &&
      document.querySelector("#lb-size-px").textContent.includes("px"));
    await page.waitForSelector("#lb-type option[value=crack]", { state: "attached" });
    await page.$eval("#lb-canvas", (c) => c.scrollIntoView({ block: "center" }));
    const at = async (x, y) => {  // image pixel centre -> page point
      const r = await page.$eval("#lb-canvas", (c) => { const b = c.getBoundingClientRect();
        return { left: b.left, top: b.top, w: b.width, h: b.height }; });
      const v = await page.evaluate(() => vigilLabels.view());
      const p = { x: r.left + (x + 0.5) * v.scale + v.ox, y: r.top + (y + 0.5) * v.scale + v.oy };
      if (p.x < r.left || p.y < r.top || p.x > r.left + r.w || p.y > r.top + r.h)
        throw new Error("pixel " + x + "," + y + " is outside the view");
      return p;
    };
    const drag = async (a, b, steps) => {
      await page.mouse.move(a.x, a.y);
      await page.mouse.down();
      await page.mouse.move(b.x, b.y, { steps });
      await page.mouse.up();
    };
    for (const z of plan.zoom) {
      if (z === "+") await page.click("#lb-zoom-in");
      else if (z === "wheel") {
        const c = await at(plan.wheel_at[0], plan.wheel_at[1]);
        await page.mouse.move(c.x, c.y);
        await page.mouse.wheel(0, -120);
      } else if (z === "pan") {
        await page.check("#lb-tools input[value=pan]");
        const v0 = await page.evaluate(() => vigilLabels.view());
        const c = await at(plan.wheel_at[0], plan.wheel_at[1]);
        await drag(c, { x: c.x + plan.pan[0], y: c.y + plan.pan[1] }, 5);
        const v1 = await page.evaluate(() => vigilLabels.view());
        if (Math.abs(v1.ox - v0.ox - plan.pan[0]) > 1.01 || Math.abs(v1.oy - v0.oy - plan.pan[1]) > 1.01)
          throw new Error("the pan moved the view by " + (v1.ox - v0.ox) + "," + (v1.oy - v0.oy));
      }
    }
    views.push(await page.evaluate(() => vigilLabels.view()));
    await page.selectOption("#lb-type", "crack");
    await page.check("#lb-tools input[value=box]");
    await drag(await at(plan.box[0], plan.box[1]), await at(plan.box[2], plan.box[3]), 6);
    if (plan.hole) {
      await page.check("#lb-box-erase");
      await drag(await at(plan.hole[0], plan.hole[1]), await at(plan.hole[2], plan.hole[3]), 4);
      await page.uncheck("#lb-box-erase");
    }
    await page.check("#lb-tools input[value=brush]");
    await page.fill("#lb-size", String(plan.brush_px));
    await drag(await at(plan.stroke[0], plan.stroke[1]), await at(plan.stroke[2], plan.stroke[3]), 12);
    await page.check("#review input[value=overrule]");
    await page.selectOption("#review select[name=verdict]", "reject");
    await page.fill("#review input[name=token]", token);
    if (process.env.VIGIL_SCREENSHOT)  // to look at the painting: VIGIL_SCREENSHOT=/tmp/x
      await page.screenshot({ path: process.env.VIGIL_SCREENSHOT + "-" + views.length + ".png" });
    await page.click("#review button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#review-result").textContent.startsWith("saved:"),
      null, { timeout: 15000 });
  }
  // The part's saved label is shown; its region loads back into the
  // editor and is kept by a new review (confirm, no type).
  await page.click("#inspections tbody tr[data-part='" + part + "']");
  await page.waitForFunction(() => /saved label: crack, a region/.test(
    document.querySelector("#lb-saved").textContent) && !document.querySelector("#lb-saved").hidden);
  await page.waitForFunction(() => document.querySelector("#lb-size-px").textContent.includes("px") &&
    vigilLabels.view().scale > 0);
  if (await page.inputValue("#lb-type") !== "")
    throw new Error("the defect type was not reset on opening the part");
  await page.click("#lb-load");
  await page.waitForFunction(() => vigilLabels.painted());
  await page.check("#review input[value=confirm]");
  await page.click("#review button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#review-result").textContent.startsWith("saved:"),
    null, { timeout: 15000 });
  // A pinch, as a tablet's two fingers send it: apart from 40 to 80 px
  // about the canvas's centre doubles the zoom and keeps the image point
  // under the fingers' midpoint where it was.
  const pinch = await page.$eval("#lb-canvas", (c) => {
    const r = c.getBoundingClientRect(), cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    const send = (type, id, x) => c.dispatchEvent(new PointerEvent(type, { pointerId: id,
      pointerType: "touch", isPrimary: id === 11, clientX: x, clientY: cy, bubbles: true,
      cancelable: true, button: 0, buttons: type === "pointerup" ? 0 : 1 }));
    const v0 = vigilLabels.view();
    send("pointerdown", 11, cx - 20);
    send("pointerdown", 12, cx + 20);
    for (let k = 1; k <= 4; k++) {
      send("pointermove", 11, cx - 20 - 5 * k);
      send("pointermove", 12, cx + 20 + 5 * k);
    }
    send("pointerup", 11, cx - 40);
    send("pointerup", 12, cx + 40);
    const v1 = vigilLabels.view(), mx = r.width / 2;
    return { ratio: v1.scale / v0.scale, before: (mx - v0.ox) / v0.scale,
      after: (mx - v1.ox) / v1.scale, painted: vigilLabels.painted() };
  });
  if (Math.abs(pinch.ratio - 2) > 1e-6 || Math.abs(pinch.before - pinch.after) > 1e-6 || pinch.painted)
    throw new Error("pinch: " + JSON.stringify(pinch));
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("VIEWS " + JSON.stringify(views));
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def expected(plan, h, w):
    """(must be 255, must be 0) boolean masks for one plan."""
    must, must_not = np.zeros((h, w), bool), np.ones((h, w), bool)
    x0, y0, x1, y1 = plan["box"]
    must[y0:y1 + 1, x0:x1 + 1] = True
    must_not[y0 - 1:y1 + 2, x0 - 1:x1 + 2] = False   # the box, to the pixel
    if plan.get("hole"):
        hx0, hy0, hx1, hy1 = plan["hole"]
        must[hy0:hy1 + 1, hx0:hx1 + 1] = False
        must_not[hy0:hy1 + 1, hx0:hx1 + 1] = True
    sx0, sy, sx1, _ = plan["stroke"]
    r = plan["brush_px"] // 2
    must[sy - r + 1:sy + r, sx0:sx1 + 1] = True       # the stroke's core
    must_not[sy - r - 2:sy + r + 3, sx0 - r - 2:sx1 + r + 3] = False
    return must, must_not


def main():
    with workdir("vigil-labels-browser-") as tmp:
        pkg = os.path.join(tmp, "pkg")
        shutil.copytree(os.path.join(root, "models", "synthetic-v2"), pkg)
        with open(os.path.join(pkg, "manifest.ini"), "a") as f:
            f.write("\n[classes]\nsurface = blowhole, crack\n")
        line = Line(build, root, tmp, 16, seed=11, split="labels-browser",
                    extra_conf=f"\n[review]\nport = 0\ntoken = {TOKEN}\ndefect_types = burr\n"
                               "read_requires_token = true\n",
                    conf_kw={"package": pkg}).start()
        try:
            if line.wait_sim() != 0:
                fail("vigil-sim failed")
            con = sqlite3.connect(line.db)
            (part,) = con.execute("SELECT part_id FROM inspections ORDER BY id DESC LIMIT 1"
                                  ).fetchone()
            (media,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
            con.close()
            files = add_part_media(line.db, line.sim_dir, part, 100.0)
            h, w = cv2.imread(files["image"][1], cv2.IMREAD_GRAYSCALE).shape
            cx, cy = w // 2, h // 2
            plans = [
                # At the fitted view: a box with a hole erased, a stroke.
                {"zoom": [], "box": [w // 8, h // 8, w // 8 + 20, h // 8 + 14],
                 "hole": [w // 8 + 5, h // 8 + 4, w // 8 + 9, h // 8 + 7],
                 "stroke": [w // 8, h - 12, w - w // 8, h - 12], "brush_px": 4},
                # Zoomed in 2x (button) and 1.25x (wheel), panned: small
                # marks near the centre, a pixel or two wide on screen no more.
                {"zoom": ["+", "wheel", "pan"], "wheel_at": [cx, cy], "pan": [-17, 11],
                 "box": [cx - 3, cy - 2, cx + 1, cy + 4],
                 "stroke": [cx + 4, cy + 8, cx + 12, cy + 8], "brush_px": 2},
            ]
            r = run_node_driver(tmp, DRIVER, node_modules,
                                [line.review_url(), TOKEN, chromium, str(part), json.dumps(plans)],
                                180)
            print(r.stdout[-2000:], r.stderr[-2000:])
            if r.returncode != 0:
                fail("the browser run failed")
            views = json.loads(r.stdout.split("VIEWS ", 1)[1].splitlines()[0])
            check(views[1]["scale"] > 2.4 * views[0]["scale"],
                  f"the second plan did not zoom in: {views}")
            con = sqlite3.connect(line.db)
            rows = con.execute("SELECT r.defect_type, r.mask_path, r.verdict FROM reviews r"
                               " JOIN inspections i ON i.id = r.inspection_id"
                               " WHERE i.part_id = ? ORDER BY r.id", (part,)).fetchall()
            con.close()
            check(len(rows) == 3 and all(t == "crack" and m and v == "reject"
                                         for t, m, v in rows[:2])
                  and rows[2][0] is None and rows[2][1] and rows[2][1] != rows[1][1],
                  f"reviews {rows}")
            if len(rows) == 3 and rows[2][1]:
                again = cv2.imread(os.path.join(media, rows[2][1]), cv2.IMREAD_UNCHANGED)
                before = cv2.imread(os.path.join(media, rows[1][1]), cv2.IMREAD_UNCHANGED)
                check(again is not None and np.array_equal(again, before),
                      "the saved region loaded back and saved again differs")
            for i, (plan, row) in enumerate(zip(plans, rows)):
                mask = cv2.imread(os.path.join(media, row[1]), cv2.IMREAD_UNCHANGED)
                if mask is None or mask.shape != (h, w):
                    fail(f"review {i}: mask {row[1]}: {None if mask is None else mask.shape}")
                must, must_not = expected(plan, h, w)
                missing = int((must & (mask != 255)).sum())
                stray = int((must_not & (mask != 0)).sum())
                check(missing == 0 and stray == 0 and set(np.unique(mask)) <= {0, 255},
                      f"review {i} (view {views[i]}): {missing} painted pixels missing, "
                      f"{stray} set where nothing was painted, values {np.unique(mask)}")
        finally:
            line.stop()
        checks.finish()
    print(f"PASS: labelling in chromium: box, erase, brush at the fitted view and zoomed "
          f"{views[1]['scale'] / views[0]['scale']:.1f}x and panned, stored where painted "
          f"({w}x{h} image)")


main()
