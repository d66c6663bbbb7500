#!/usr/bin/python3
"""The review page in headless Debian chromium, driven by playwright-core
(npm), over a line run by vigil-sim + vigild: load the list of rejected
parts, open one, see its vibration figures, try to overrule it without the
token (refused), overrule it with the token, and find the review in the
SQLite file.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed;
`make test` installs both (Makefile: chromium in DEBIAN_PACKAGES,
playwright-core into BUILD/web-test).

usage: test_review_browser.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import os
import re
import sqlite3
import sys

from linetest import Line, add_part_media, browser_tools, fail, run_node_driver, workdir

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 40
TOKEN = "browser-test-token-42"
uplot = os.path.join(build, "web-vendor", "node_modules", "uplot", "dist", "uPlot.iife.min.js")

chromium, node_modules = browser_tools(build)
if not os.path.isfile(uplot):
    fail(f"the charting library is not in {uplot} although npm is here: "
         f"run `make web-deps BUILD={build}`")

DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, token, executablePath, wantCharts] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url + "?verdict=reject&limit=50");
  await page.waitForSelector("#inspections tbody tr", { timeout: 15000 });
  const verdicts = await page.$$eval("#inspections tbody tr td.verdict", (tds) => tds.map((t) => t.textContent));
  if (!verdicts.length || verdicts.some((v) => !v.startsWith("reject")))
    throw new Error("the list shows other verdicts: " + verdicts.join(","));
  const part = Number(await page.getAttribute("#inspections tbody tr", "data-part"));
  await page.click("#inspections tbody tr");
  await page.waitForSelector("#detail:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#d-vibration").textContent.includes("ISO 10816 zone"));
  const vib = await page.textContent("#d-vibration");
  if (!/envelope at BPFO/.test(vib)) throw new Error("no bearing envelope lines: " + vib);

  // The camera image with the defect heatmap over it: the heatmap's hot
  // centre turns the gray image red there, and goes with the toggle.
  // data-drawn: the canvas exists (300 wide, blank) before its images load.
  await page.waitForSelector("#d-media canvas.part-image[data-drawn]", { timeout: 15000 });
  const centre = () => page.$eval("#d-media canvas.part-image", (c) => Array.from(
    c.getContext("2d").getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3)));
  const on = await centre();
  await page.uncheck("#d-heat-show");
  const off = await centre();
  await page.check("#d-heat-show");
  await page.fill("#d-heat-opacity", "0");
  const clear = await centre();
  if (!(off[0] === off[1] && off[1] === off[2]) || !(on[0] > on[1] + 40) ||
      clear.join() !== off.join())
    throw new Error("heatmap overlay: on " + on + ", off " + off + ", opacity 0 " + clear);
  // The envelope spectrum with the bearing defect frequencies marked.
  await page.waitForFunction(() => /BPFO 107\.4 Hz/.test(document.querySelector("#d-marks").textContent));
  if (wantCharts === "yes") {
    await page.waitForSelector("#d-spectrum canvas", { timeout: 15000 });
    await page.waitForSelector("#d-waveform canvas");
  }
  await page.waitForFunction(() => /\d/.test(document.querySelector("#st-parts").textContent));
  if (wantCharts === "yes") {
    // Live status charts, drawn by the charting library vigild serves.
    await page.waitForSelector("#live:not([hidden]) #chart-rate canvas", { timeout: 15000 });
    await page.waitForSelector("#chart-latency canvas");
    if (await page.isVisible("#charts-unavailable"))
      throw new Error("the page says charts are unavailable although uPlot is served");
  }

  await page.check("#review input[value=overrule]");
  await page.selectOption("#review select[name=verdict]", "accept");
  await page.fill("#review input[name=note]", "browser: <b>not</b> a defect");
  await page.fill("#review input[name=reviewer]", "playwright");
  await page.fill("#review input[name=token]", "");
  await page.click("#review button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#review-result").textContent.includes("refused (401)"));

  await page.fill("#review input[name=token]", token);
  await page.click("#review button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#review-result").textContent.startsWith("saved: overrule"));
  const fields = await page.textContent("#d-fields");
  if (!fields.includes("overrule → accept: browser: <b>not</b> a defect"))
    throw new Error("the detail does not show the review as text: " + fields);
  if (process.env.VIGIL_SCREENSHOT)  // to look at the page: VIGIL_SCREENSHOT=page.png
    await page.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  // Without the charting library the page still lists and says so.
  const bare = await browser.newPage();
  bare.on("pageerror", (e) => errors.push(String(e)));
  await bare.route("**/vendor/**", (r) => r.fulfill({ status: 404, body: "not installed" }));
  await bare.goto(url + "?verdict=reject&limit=5");
  await bare.waitForSelector("#inspections tbody tr", { timeout: 15000 });
  await bare.click("#inspections tbody tr");
  await bare.waitForSelector("#detail:not([hidden])");
  if (!(await bare.isVisible("#charts-unavailable")) || await bare.isVisible("#live"))
    throw new Error("without uPlot the page does not say that charts are unavailable");
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("PART " + part);
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def main():
    with workdir("vigil-review-browser-") as tmp:
        line = Line(build, root, tmp, parts, seed=99, split="browser",
                    extra_conf=f"\n[review]\nport = 0\ntoken = {TOKEN}\n").start()
        try:
            if line.wait_sim() != 0:
                fail("vigil-sim failed")
            url = line.review_url()
            # The part the page opens first (the newest reject) gets an
            # image, a heatmap and a vibration window modulated at BPFO.
            con = sqlite3.connect(line.db)
            (newest,) = con.execute("SELECT part_id FROM inspections WHERE verdict = 'reject'"
                                    " ORDER BY id DESC LIMIT 1").fetchone()
            con.close()
            add_part_media(line.db, line.sim_dir, newest, 9 / 2 * 29.95 * (1 - 7.94 / 39.04))
            r = run_node_driver(tmp, DRIVER, node_modules, [url, TOKEN, chromium, "yes"], 120)
            print(r.stdout[-2000:], r.stderr[-2000:])
            if r.returncode != 0:
                fail("the browser run failed")
            part = int(re.search(r"PART (\d+)", r.stdout).group(1))
            con = sqlite3.connect(line.db)
            rows = con.execute("SELECT i.part_id, r.decision, r.verdict, r.note, r.reviewer"
                               " FROM reviews r JOIN inspections i ON i.id = r.inspection_id"
                               ).fetchall()
            con.close()
            if rows != [(part, "overrule", "accept", "browser: <b>not</b> a defect",
                         "playwright")]:
                fail(f"reviews in the database: {rows}")
        finally:
            line.stop()
    print(f"PASS: the review page in chromium: list, detail, 401 without the token, "
          f"overrule of part {part} stored")


main()
