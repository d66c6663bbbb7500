#!/usr/bin/python3
"""Tracing escapes on the review page in headless Debian chromium
(playwright-core), over a log of two real runs made on purpose
(tracetest.py: two stations, jobs and model versions) served by vigild
--review-only.

Sets the date, shift, job, model and station filters; the URL carries them;
a reload restores them and the same rows; the "Download CSV" link downloads
exactly the view's rows. Marks the open part as an escape with the token
(refused without it); the Escapes view shows it with its image, its defect
map and its neighbours on the line, the note as text, each neighbour
openable; and the escape is in the SQLite file.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm is
there but playwright-core was not installed (as test_review_browser.py).

usage: test_review_trace_browser.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import csv
import datetime
import json
import os
import sqlite3
import sys
import urllib.request

from linetest import Vigild, add_part_media, browser_tools, fail, run_node_driver, workdir
from tracetest import TOKEN, two_station_log

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 30

chromium, node_modules = browser_tools(build)

DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, executablePath, argsJson] = process.argv.slice(2);
const a = JSON.parse(argsJson);
const fs = require("fs");
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const context = await browser.newContext({ acceptDownloads: true,
    viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const listed = () => page.$$eval("#inspections tbody tr", (trs) => trs.map((t) => Number(t.dataset.part)));
  const waitRows = (n) => page.waitForFunction((n) =>
    document.querySelectorAll("#inspections tbody tr").length === n, n, { timeout: 15000 });

  await page.goto(url);
  await page.waitForSelector("#inspections tbody tr", { timeout: 15000 });
  // The choices come from the log: both stations, both jobs, both models.
  await page.waitForFunction(() => document.querySelectorAll("#filters select[name=station] option").length === 3,
    null, { timeout: 15000 });
  await page.selectOption("#filters select[name=station]", "press-2");
  await page.selectOption("#filters select[name=job]", "1");
  await page.selectOption("#filters select[name=model]", "synthetic-1");
  await page.selectOption("#filters select[name=shift]", a.shift);
  await page.fill("#filters input[name=since]", a.since);
  await page.click("#filters button[type=submit]");
  await waitRows(a.want.length);
  const first = await listed();
  if (first.join() !== a.want.join()) throw new Error("filtered list " + first + ", want " + a.want);
  const q = new URL(page.url()).searchParams;
  for (const [k, v] of [["station", "press-2"], ["job", "1"], ["model", "synthetic-1"],
                        ["shift", a.shift], ["since", a.since]])
    if (q.get(k) !== v) throw new Error("the URL lacks " + k + "=" + v + ": " + page.url());

  // The link is the view: a reload (or a colleague opening it) shows the same.
  await page.reload();
  await waitRows(a.want.length);
  const again = await listed();
  if (again.join() !== first.join()) throw new Error("after reload " + again + ", before " + first);
  const st = await page.$eval("#filters select[name=station]", (s) => s.value);
  const since = await page.$eval("#filters input[name=since]", (s) => s.value);
  if (st !== "press-2" || since !== a.since) throw new Error("form not restored: " + st + " " + since);

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#trace-csv")]);
  await download.saveAs(a.csv);

  // Mark the open part as an escape: refused without the token, then saved.
  await page.click(`#inspections tbody tr[data-part="${a.escape}"]`);
  await page.waitForSelector("#detail:not([hidden])");
  await page.waitForFunction((p) => document.querySelector("#trace-mark input[name=part]").value === String(p),
    a.escape);
  await page.fill("#trace-mark input[name=note]", a.note);
  await page.fill("#trace-mark input[name=reporter]", "playwright");
  await page.fill("#review input[name=token]", "");
  await page.click("#trace-mark button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#trace-mark-result").textContent.includes("refused (401)"));
  await page.fill("#review input[name=token]", a.token);
  await page.click("#trace-mark button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#trace-mark-result").textContent.startsWith("saved: escape"));
  const art = `#trace-escape-list:not([hidden]) article[data-part="${a.escape}"]`;
  await page.waitForSelector(art, { timeout: 15000 });
  await page.waitForFunction((sel) => {
    const img = document.querySelector(sel + " img.trace-image");
    const map = document.querySelector(sel + " img.trace-heatmap");
    return img && img.complete && img.naturalWidth > 0 && map && map.complete && map.naturalWidth > 0;
  }, art, { timeout: 15000 });
  const note = await page.textContent(art + " .trace-note");
  if (note !== a.note) throw new Error("the note is not shown as text: " + note);
  if (await page.$(art + " .trace-note *")) throw new Error("the note became markup");
  const nb = await page.$$eval(art + " table.trace-neighbours tbody tr", (trs) => trs.map((t) => Number(t.dataset.part)));
  if (nb.join() !== a.neighbours.join()) throw new Error("neighbours " + nb + ", want " + a.neighbours);
  const mark = await page.textContent(art + " tr.trace-escaped");
  if (!mark.startsWith("escape" + a.escape)) throw new Error("the escaped row is not marked: " + mark);
  if (!(await page.evaluate(() => location.hash === "#escapes")))
    throw new Error("the Escapes view is not in the URL");
  // A neighbour opens in the part panel.
  await page.click(`${art} table.trace-neighbours tbody tr[data-part="${a.neighbours[0]}"]`);
  await page.waitForFunction((p) => document.querySelector("#d-part").textContent === String(p),
    a.neighbours[0]);
  if (process.env.VIGIL_SCREENSHOT)
    await page.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  // The escape view survives a reload of its link, and at tablet sizes in
  // both orientations nothing of it (or of the tracing filters) runs off
  // the screen.
  for (const [width, height] of [[820, 1180], [1180, 820]]) {
    await page.setViewportSize({ width, height });
    await page.reload();
    await page.waitForSelector(art + " img.trace-heatmap", { timeout: 15000 });
    const over = await page.evaluate(() => {
      const out = [];
      for (const el of document.querySelectorAll("#trace-escapes *, #trace-filters *")) {
        const r = el.getBoundingClientRect();
        if (r.width && r.right > window.innerWidth + 1) out.push(el.tagName + "." + el.className + " " + Math.round(r.right));
      }
      return out;
    });
    if (over.length) throw new Error(width + "x" + height + ": off screen: " + over.slice(0, 5).join(", "));
    if (process.env.VIGIL_SCREENSHOT)
      await page.screenshot({ path: process.env.VIGIL_SCREENSHOT.replace(/\.png$/, "-" + width + ".png"), fullPage: true });
  }
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("OK");
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def main():
    with workdir("vigil-trace-browser-") as tmp:
        db, conf = two_station_log(build, root, tmp, parts)
        con = sqlite3.connect(db)
        run2 = con.execute("SELECT id, part_id, t_wall_us FROM inspections WHERE station ="
                           " 'press-2' ORDER BY id").fetchall()
        con.close()
        # From a whole second a third into run 2, as a datetime-local field
        # gives it: local time, to the second, and without the seconds when
        # they are 0 (the field drops them: HH:MM, not HH:MM:00).
        since_s = run2[parts // 3][2] // 1_000_000
        since_dt = datetime.datetime.fromtimestamp(since_s)
        since = since_dt.strftime("%Y-%m-%dT%H:%M" if since_dt.second == 0
                                  else "%Y-%m-%dT%H:%M:%S")
        vigild = Vigild(build, conf, os.path.join(tmp, "review-only.log"), ["--review-only"])
        try:
            url = vigild.review_url()
            with urllib.request.urlopen(url + "api/shifts?n=6", timeout=20) as r:
                occ = json.load(r)["occurrences"]
            t_mid = run2[parts // 2][2]
            span = next((o for o in occ if o["start_us"] <= t_mid < o["end_us"]), None)
            if span is None:
                fail(f"no listed shift holds the run: {occ}")
            want = [p for (_, p, t) in reversed(run2)
                    if t >= since_s * 1_000_000 and span["start_us"] <= t < span["end_us"]]
            # The escape: a part of the view with three parts either side,
            # its image and defect map kept.
            escape = run2[parts // 2][1] if run2[parts // 2][1] in want else want[len(want) // 2]
            i = [p for (_, p, _) in run2].index(escape)
            neighbours = [p for (_, p, _) in run2[max(0, i - 3):i + 4]]
            add_part_media(db, os.path.join(tmp, "run2", "sim"), escape, 100.0)
            args = dict(shift=span["label"], since=since, want=want, escape=escape,
                        neighbours=neighbours, token=TOKEN,
                        note='<img src=x onerror="alert(1)">, "crack", goods-in',
                        csv=os.path.join(tmp, "view.csv"))
            r = run_node_driver(tmp, DRIVER, node_modules, [url, chromium, json.dumps(args)], 180)
            print(r.stdout[-2000:], r.stderr[-2000:])
            if r.returncode != 0:
                fail("the browser run failed")
            with open(args["csv"], newline="") as f:
                got = [int(row["part_id"]) for row in csv.DictReader(f)]
            if got != list(reversed(want)):
                fail(f"the CSV link gave parts {got}, want {list(reversed(want))}")
            con = sqlite3.connect(db)
            stored = con.execute("SELECT i.part_id, i.station, e.note, e.reporter FROM escapes e"
                                 " JOIN inspections i ON i.id = e.inspection_id").fetchall()
            con.close()
            if stored != [(escape, "press-2", args["note"], "playwright")]:
                fail(f"escapes in the database: {stored}")
        finally:
            vigild.stop(timeout=30)
    print(f"PASS: tracing on the page: filters in the URL, reload, CSV, escape of part {escape}")


main()
