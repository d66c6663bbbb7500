#!/usr/bin/python3
"""A fused package's two maps on the review page (issue 21), in headless
Debian chromium driven by playwright-core (npm), over a line run by
vigil-sim + vigild:

part A   has a defect map (hot in the image's centre) and an anomaly map
         (hot in its top-left corner): both boxes show, ticked; the centre
         is red and the corner blue; unticking the anomaly map takes the blue
         away and leaves the red as it was, unticking the defect map the
         reverse; both off, or the shared opacity at 0, leave the camera's
         gray image; at 820x1180, 1180x820 and 1440x900 the controls stay
         inside the panel;
part B   has a defect map only: no anomaly box, and nothing blue drawn;
API      part A's media list has kind 'anomaly', served as image/png with
         the file's bytes;
escapes  part A marked as an escape shows its anomaly map, captioned
         "anomaly map", beside its image and defect map.

vigild runs the synthetic package, which has no anomaly map; the model side
of fused packages lands on main separately. So the anomaly map is added the
way a second producer would: its PNG written into the log's media folder and
its row inserted into the real SQLite log, as vigild's media thread writes
them for a fused package (ID-PART-anomaly.png, kind 'anomaly', no camera).

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (`make web-test-deps`).

usage: test_review_maps_browser.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import json
import os
import sqlite3
import sys
import urllib.request

from linetest import Line, add_part_media, browser_tools, fail, run_node_driver, workdir

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 40
TOKEN = "maps-browser-token-21"

chromium, node_modules = browser_tools(build)

DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, executablePath, argJson] = process.argv.slice(2);
const a = JSON.parse(argJson);
const T = 15000;
function must(cond, msg) { if (!cond) throw new Error(msg); }

(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // Opens a part and waits until its image is drawn with every map it
  // lists (the canvas is drawn once all of them are loaded).
  async function open(part) {
    await page.click('#inspections tbody tr[data-part="' + part + '"] td.num');
    await page.waitForFunction((p) => document.querySelector("#d-part").textContent === String(p) &&
      !document.querySelector("#detail").hidden, part, { timeout: T });
    await page.waitForFunction((p) => {
      const c = document.querySelector("#d-media canvas.part-image");
      return c && c.dataset.drawn && c.dataset.media === String(p);
    }, a.image_media[part], { timeout: T });
  }
  // [r, g, b] of the part's canvas at a fraction of its size.
  const px = (fx, fy) => page.$eval("#d-media canvas.part-image", (c, f) => Array.from(
    c.getContext("2d").getImageData(Math.floor(c.width * f[0]), Math.floor(c.height * f[1]), 1, 1)
      .data.slice(0, 3)), [fx, fy]);
  const CENTRE = [0.5, 0.5], CORNER = [0.125, 0.125];
  const gray = (p) => p[0] === p[1] && p[1] === p[2];
  const red = (p) => p[0] > p[1] + 40 && p[0] > p[2] + 40;
  const blue = (p) => p[2] > p[0] + 40 && p[2] > p[1] + 40;
  const both = async () => ({ centre: await px(...CENTRE), corner: await px(...CORNER) });

  await page.goto(url + "?verdict=reject&limit=50");
  await page.waitForSelector("#inspections tbody tr", { timeout: T });

  // Part A: both maps, both boxes ticked.
  await open(a.both);
  await page.waitForSelector("#d-anomaly-label", { state: "visible", timeout: T });
  must(await page.isVisible("#d-heat-show") && await page.isChecked("#d-heat-show"),
    "the defect map's box is not shown ticked");
  must(await page.isVisible("#d-anomaly-show") && await page.isChecked("#d-anomaly-show"),
    "the anomaly map's box is not shown ticked");
  const defectLabel = (await page.textContent("#d-heat-label")).trim();
  const anomalyLabel = (await page.textContent("#d-anomaly-label")).trim();
  must(defectLabel === "defect map", "defect label: " + defectLabel);
  must(anomalyLabel === "anomaly map (good-only model)", "anomaly label: " + anomalyLabel);
  // The swatches are the legend: each is its map's colour.
  const sw = await page.evaluate(() => ["defect", "anomaly"].map((k) =>
    getComputedStyle(document.querySelector("#d-heat-controls .map-swatch." + k)).backgroundImage));
  must(/255, 0, 0/.test(sw[0]) && /0, 0, 255/.test(sw[1]), "swatches: " + sw.join(" | "));

  const on = await both();
  must(red(on.centre) && blue(on.corner), "both maps on: centre " + on.centre + ", corner " + on.corner);
  await page.uncheck("#d-anomaly-show");
  const noAnomaly = await both();
  must(gray(noAnomaly.corner), "anomaly map off, the corner is still coloured: " + noAnomaly.corner);
  must(noAnomaly.centre.join() === on.centre.join(), "anomaly map off changed the defect map: " +
    noAnomaly.centre + " was " + on.centre);
  await page.check("#d-anomaly-show");
  await page.uncheck("#d-heat-show");
  const noDefect = await both();
  must(gray(noDefect.centre), "defect map off, the centre is still coloured: " + noDefect.centre);
  must(noDefect.corner.join() === on.corner.join(), "defect map off changed the anomaly map: " +
    noDefect.corner + " was " + on.corner);
  await page.uncheck("#d-anomaly-show");
  const none = await both();
  must(none.centre.join() === noDefect.centre.join() && none.corner.join() === noAnomaly.corner.join(),
    "both off: " + JSON.stringify(none));
  await page.check("#d-anomaly-show");
  await page.check("#d-heat-show");
  await page.fill("#d-heat-opacity", "0");
  const clear = await both();
  must(JSON.stringify(clear) === JSON.stringify(none), "opacity 0: " + JSON.stringify(clear));
  await page.fill("#d-heat-opacity", "55");
  must(JSON.stringify(await both()) === JSON.stringify(on), "opacity back: not as before");
  console.log("PIXELS " + JSON.stringify({ on, noAnomaly, noDefect, none }));

  // The controls stay inside the panel and the window at tablet and
  // desktop sizes, and the two boxes do not overlap.
  for (const [w, h] of [[820, 1180], [1180, 820], [1440, 900]]) {
    await page.setViewportSize({ width: w, height: h });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const m = await page.evaluate(() => {
      const panel = document.querySelector("#detail").getBoundingClientRect();
      const out = [];
      const boxes = [];
      for (const el of document.querySelectorAll("#d-heat-controls label, #d-heat-controls input")) {
        const r = el.getBoundingClientRect();
        if (r.width === 0) out.push(el.id || el.tagName + " not shown");
        else if (r.right > panel.right + 1 || r.left < panel.left - 1 || r.right > innerWidth)
          out.push((el.id || el.tagName) + " at " + Math.round(r.left) + ".." + Math.round(r.right));
        if (el.tagName === "LABEL") boxes.push(r);
      }
      for (let i = 0; i < boxes.length; i++)
        for (let j = i + 1; j < boxes.length; j++) {
          const p = boxes[i], q = boxes[j];
          if (!(p.right <= q.left + 1 || q.right <= p.left + 1 || p.bottom <= q.top + 1 || q.bottom <= p.top + 1))
            out.push("labels " + i + " and " + j + " overlap");
        }
      return { sw: document.documentElement.scrollWidth, iw: innerWidth, out };
    });
    must(m.sw <= m.iw, w + "x" + h + ": page " + m.sw + " px wide in " + m.iw);
    must(!m.out.length, w + "x" + h + ": " + m.out.join("; "));
    console.log("LAYOUT " + w + "x" + h + " ok");
  }
  await page.setViewportSize({ width: 1440, height: 900 });

  // Part B: a defect map only.
  await open(a.heat_only);
  must(await page.isVisible("#d-heat-show"), "part B: the defect map's box is not shown");
  must(await page.isHidden("#d-anomaly-label"), "part B: an anomaly box without an anomaly map");
  const blues = await page.$eval("#d-media canvas.part-image", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 40) n++;
    return n;
  });
  must(blues === 0, "part B: " + blues + " blue pixels without an anomaly map");
  must(red(await px(...CENTRE)), "part B: its defect map is not drawn");
  // And back to A: its box shows again.
  await open(a.both);
  await page.waitForSelector("#d-anomaly-label", { state: "visible", timeout: T });

  // The escape report shows A's anomaly map with its caption.
  await page.goto(url + "#escapes");
  const art = '#trace-escape-list:not([hidden]) article[data-part="' + a.both + '"]';
  await page.waitForFunction((sel) => {
    const img = document.querySelector(sel + " img.trace-anomaly");
    return img && img.complete && img.naturalWidth > 0;
  }, art, { timeout: T });
  const caps = await page.$$eval(art + " figcaption", (fs) => fs.map((f) => f.textContent));
  must(caps.includes("anomaly map") && caps.some((c) => c.startsWith("defect map")) &&
    caps.some((c) => c.startsWith("image")), "escape captions: " + caps.join(" | "));

  if (process.env.VIGIL_SCREENSHOT) {  // to look at it: VIGIL_SCREENSHOT=maps.png
    await page.goto(url + "?verdict=reject&limit=50");
    await page.waitForSelector("#inspections tbody tr", { timeout: T });
    await open(a.both);
    await page.evaluate(() => document.querySelector("#d-heat-controls").scrollIntoView());
    await page.screenshot({ path: process.env.VIGIL_SCREENSHOT });
  }
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("OK");
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def add_anomaly_map(db, part_id):
    """Keeps an anomaly map with part_id's latest inspection as vigild's
    media thread does for a fused package: a gray PNG of the defect map's
    size (0..1 as 0..255) named ID-PART-anomaly.png in the media folder, and
    a media row of kind 'anomaly' with no camera. Hot in the top-left
    quarter of the image, where add_part_media's defect map is cold.
    Returns (media id, full path)."""
    import cv2
    import numpy as np

    con = sqlite3.connect(db)
    try:
        (media_dir,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
        (insp,) = con.execute("SELECT max(id) FROM inspections WHERE part_id = ?",
                              (part_id,)).fetchone()
        (heat_path,) = con.execute("SELECT path FROM media WHERE inspection_id = ? AND"
                                   " kind = 'heatmap'", (insp,)).fetchone()
        heat = cv2.imread(os.path.join(media_dir, heat_path), cv2.IMREAD_GRAYSCALE)
        h, w = heat.shape
        if h < 8 or w < 8:
            fail(f"the defect map is {w}x{h}: too small to keep the maps apart")
        anomaly = np.zeros_like(heat)
        anomaly[:h // 4, :w // 4] = 255
        day = os.path.dirname(heat_path)
        name = f"{insp}-{part_id}-anomaly.png"
        full = os.path.join(media_dir, day, name)
        if not cv2.imwrite(full, anomaly):
            fail(f"cannot write {full}")
        cur = con.execute("INSERT INTO media (inspection_id, camera, kind, path, bytes)"
                          " VALUES (?, NULL, 'anomaly', ?, ?)",
                          (insp, f"{day}/{name}", os.path.getsize(full)))
        con.commit()
        return cur.lastrowid, full
    finally:
        con.close()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.headers.get("Content-Type"), r.read()


def main():
    with workdir("vigil-review-maps-browser-") as tmp:
        line = Line(build, root, tmp, parts, seed=99, split="browser",
                    extra_conf=f"\n[review]\nport = 0\ntoken = {TOKEN}\n").start()
        try:
            if line.wait_sim() != 0:
                fail("vigil-sim failed")
            url = line.review_url()
            con = sqlite3.connect(line.db)
            rejects = [p for (p,) in con.execute("SELECT part_id FROM inspections WHERE"
                                                 " verdict = 'reject' ORDER BY id DESC LIMIT 2")]
            con.close()
            if len(rejects) < 2:
                fail(f"the run has {len(rejects)} reject(s); the test needs two")
            both, heat_only = rejects
            files = {}
            for p in rejects:
                files[p] = add_part_media(line.db, line.sim_dir, p, 100.0)
            anomaly_id, anomaly_file = add_anomaly_map(line.db, both)

            # The API lists the anomaly map and serves it like the defect map.
            _, body = get(f"{url}api/parts/{both}")
            listed = {m["kind"]: m for m in json.loads(body)["media"]}
            if sorted(listed) != ["anomaly", "heatmap", "image", "vibration"]:
                fail(f"part {both}: media listed {sorted(listed)}")
            if listed["anomaly"]["id"] != anomaly_id:
                fail(f"part {both}: anomaly map listed as {listed['anomaly']}, row {anomaly_id}")
            ctype, data = get(url + listed["anomaly"]["url"].lstrip("/"))
            with open(anomaly_file, "rb") as f:
                if ctype != "image/png" or data != f.read():
                    fail(f"the anomaly map is served as {ctype}, {len(data)} bytes, not the file")
            _, body = get(f"{url}api/parts/{heat_only}")
            kinds = sorted(m["kind"] for m in json.loads(body)["media"])
            if kinds != ["heatmap", "image", "vibration"]:
                fail(f"part {heat_only}: media listed {kinds}")
            # Part A reported as an escape, for the Escapes view.
            req = urllib.request.Request(f"{url}api/parts/{both}/escape", method="POST",
                                         data=json.dumps({"note": "maps", "reporter": "test"})
                                         .encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=20) as r:
                if r.status // 100 != 2:
                    fail(f"marking part {both} as an escape: HTTP {r.status}")

            arg = {"both": both, "heat_only": heat_only,
                   "image_media": {str(p): files[p]["image"][0] for p in rejects}}
            r = run_node_driver(tmp, DRIVER, node_modules, [url, chromium, json.dumps(arg)], 180)
            print(r.stdout[-3000:], r.stderr[-3000:])
            if r.returncode != 0 or "\nOK" not in r.stdout:
                fail("the browser run failed")
        finally:
            line.stop()
    print(f"PASS: part {both} shows its defect and anomaly maps, each toggled on its own; "
          f"part {heat_only} (defect map only) shows no anomaly box; the API and the escape "
          f"report have the anomaly map")


main()
