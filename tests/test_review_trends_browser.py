#!/usr/bin/python3
"""The trends view and the quality alarm banner in headless Debian chromium,
driven by playwright-core (npm):

  - vigild --review-only over a log with known timestamps (24 hours of 100
    parts, a burst of rejects in hour 10; TZ=UTC): the p-chart is drawn
    (a canvas), the summary and the table flag hour 10 and no other, and
    by shift the table lists the four shifts; without the charting library
    the table still carries every figure;
  - a running line whose burst of defective parts raised the yield alarm
    (as tests/test_alarm_line.py): the banner shows it and when it began;
  - the view's settings go into the address with Show, and a reload of it
    shows the same view (QA acceptance D4).

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core or uPlot was not installed (`make test`
installs both: web-test-deps, web-deps).

usage: test_review_trends_browser.py BUILD_DIR SOURCE_ROOT
"""
import os
import shutil
import socket
import sqlite3
import subprocess
import sys

from linetest import (Vigild, binaries, browser_tools, camera_section, fail, line_config,
                      require_model, run_node_driver, workdir)
from plctest import MasterPLC, ST_READY, quiet_pymodbus, start_vigild, stop_vigild

build, root = sys.argv[1], sys.argv[2]
uplot = os.path.join(build, "web-vendor", "node_modules", "uplot", "dist", "uPlot.iife.min.js")
ST_QUALITY_ALARM = 1 << 14

chromium, node_modules = browser_tools(build)
if not os.path.isfile(uplot):
    fail(f"the charting library is not in {uplot} although npm is here: "
         f"run `make web-deps BUILD={build}`")

DRIVER = r"""
const { chromium } = require("playwright-core");
const [logUrl, liveUrl, executablePath] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const errors = [];
  const view = "?trends_bucket=hour&trends_since=2026-11-18&trends_until=2026-11-19";
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on("pageerror", (e) => errors.push(String(e.stack || e)));
  await page.goto(logUrl + view);
  await page.waitForSelector("#trends-pchart canvas", { timeout: 15000 });
  await page.waitForSelector("#trends-yield canvas");
  await page.waitForSelector("#trends-table tbody tr");
  const flagged = await page.$$eval("#trends-table tbody tr.ooc", (r) => r.map((x) => x.dataset.label));
  if (flagged.join() !== "2026-11-18 10:00")
    throw new Error("flagged rows: " + flagged.join());
  const ooc = await page.getAttribute("#trends-pchart", "data-out-of-control");
  if (ooc !== "2026-11-18 10:00") throw new Error("p-chart flags: " + ooc);
  const summary = await page.textContent("#trends-summary");
  if (!/1 out of control: 2026-11-18 10:00/.test(summary)) throw new Error("summary: " + summary);
  const rows = await page.$$eval("#trends-table tbody tr", (r) => r.length);
  if (rows !== 24) throw new Error(rows + " table rows, want 24");
  const row10 = await page.textContent("#trends-table tbody tr.ooc");
  if (!row10.includes("30.00 %") || !row10.includes("out of control"))
    throw new Error("hour 10's row: " + row10);
  if (await page.isVisible("#alarm-banner")) throw new Error("an alarm banner without a line");
  if (process.env.VIGIL_SCREENSHOT)
    await page.screenshot({ path: process.env.VIGIL_SCREENSHOT + "-trends.png", fullPage: true });
  // By shift, from the form.
  await page.selectOption("#trends-form select[name=bucket]", "shift");
  await page.fill("#trends-form input[name=since]", "2026-11-18T00:00");
  await page.click("#trends-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#trends-table tbody tr").dataset.label === "2026-11-18 night");
  const shifts = await page.$$eval("#trends-table tbody tr", (r) => r.map((x) => x.dataset.label));
  if (shifts.join() !== "2026-11-18 night,2026-11-18 late,2026-11-18 early,2026-11-17 night")
    throw new Error("shift rows: " + shifts.join());
  // The view is in the address (QA acceptance D4): a bookmark, a reload,
  // shows the same.
  const q = new URL(page.url()).searchParams;
  if (q.get("trends_bucket") !== "shift" || q.get("trends_since") !== "2026-11-18T00:00" ||
      q.get("trends_until") !== "2026-11-19")
    throw new Error("the view is not in the address: " + page.url());
  await page.reload();
  await page.waitForFunction(() => {
    const tr = document.querySelector("#trends-table tbody tr");
    return tr && tr.dataset.label === "2026-11-18 night";
  }, null, { timeout: 15000 });
  const again = await page.$$eval("#trends-table tbody tr", (r) => r.map((x) => x.dataset.label));
  if (again.join() !== shifts.join()) throw new Error("after a reload: " + again.join());
  if ((await page.inputValue("#trends-form select[name=bucket]")) !== "shift")
    throw new Error("the bucket is not restored");

  // Without the charting library: no canvas, the table still flags hour 10.
  const bare = await browser.newPage();
  bare.on("pageerror", (e) => errors.push(String(e.stack || e)));
  await bare.route("**/vendor/**", (r) => r.fulfill({ status: 404, body: "not installed" }));
  await bare.goto(logUrl + view);
  await bare.waitForSelector("#trends-table tbody tr.ooc", { timeout: 15000 });
  if (await bare.$("#trends-pchart canvas")) throw new Error("a chart without uPlot?");

  // The live line with its yield alarm raised: the banner.
  const live = await browser.newPage({ viewport: { width: 820, height: 1180 } });
  live.on("pageerror", (e) => errors.push(String(e.stack || e)));
  await live.goto(liveUrl);
  await live.waitForSelector("#alarm-banner:not([hidden]) p[data-kind=yield]", { timeout: 15000 });
  const banner = await live.textContent("#alarm-banner");
  if (!/Quality alarm: yield since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\. yield out of control/.test(banner))
    throw new Error("banner: " + banner);
  if (process.env.VIGIL_SCREENSHOT)
    await live.screenshot({ path: process.env.VIGIL_SCREENSHOT + "-alarm.png" });
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("OK");
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""

DAY_US = 1_794_960_000_000_000  # 2026-11-18 00:00 UTC
HOUR_US = 3600 * 1_000_000


def crafted_log(db):
    """24 hours of 100 parts: 4 rejects an hour, 30 in hour 10."""
    subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, "upgrade"],
                   check=True, capture_output=True, timeout=60)
    rows = []
    for h in range(24):
        for i in range(100):
            n = h * 100 + i
            rej = i < (30 if h == 10 else 4)
            rows.append((n, n, n, DAY_US + h * HOUR_US + i * 30_000_000,
                         "reject" if rej else "accept", 2 if rej else 1,
                         "surface" if rej else "none", 0))
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us, verdict,"
                    " verdict_code, defect_class, flags) VALUES (?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def alarmed_line(tmp):
    """A running line whose yield alarm is raised: 40 good parts, then 20
    with surface defects (images of a second generated set)."""
    sim, bad = os.path.join(tmp, "sim"), os.path.join(tmp, "bad")
    for out, parts, seed, p in ((sim, 60, 23, "0"), (bad, 20, 24, "1")):
        subprocess.run([binaries(build)[0], "generate", "--out", out, "--parts", str(parts),
                        "--seed", str(seed), "--p-surface", p, "--p-vibration", "0"],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
    for k in range(20):
        shutil.copy(os.path.join(bad, "images", f"part-{k:05d}.png"),
                    os.path.join(sim, "images", f"part-{40 + k:05d}.png"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(tmp, "line.conf")
    with open(conf, "w") as f:
        f.write(line_config(camera_section(sim, 20000, "", "restart = never\n"), sim, root,
                            port, os.path.join(tmp, "line.db"), deadline_ms=20000,
                            window_timeout_ms=20000,
                            plc_extra="mode = server\npeer_timeout_ms = 600000\n",
                            tail="commit_timeout_ms = 10000\n\n"
                                 "[review]\nlisten = 127.0.0.1\nport = 0\n\n"
                                 "[alarm]\nwindow_parts = 20\nbaseline_parts = 20\n"
                                 "expected_reject_rate = 0.05\n"))
    v = Vigild(build, conf, os.path.join(tmp, "line.log"))
    plc = MasterPLC(port)
    start_vigild(v, plc, ST_READY)
    for i in range(1, 61):
        plc.trigger(i, i)
        r = plc.next_result()
        plc.ack(r[0])
    v.wait_until("status bit 14 (quality alarm)", lambda: plc.status()[1] & ST_QUALITY_ALARM)
    return v, plc


def main():
    quiet_pymodbus()
    require_model(root)
    with workdir("vigil-trends-browser-") as tmp:
        db = os.path.join(tmp, "crafted.db")
        crafted_log(db)
        conf = os.path.join(tmp, "review.conf")
        with open(conf, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n")
        ro = Vigild(build, conf, os.path.join(tmp, "review-only.log"), ["--review-only"],
                    env={"TZ": "UTC"})
        log_url = ro.review_url()
        v, plc = alarmed_line(tmp)
        live_url = v.review_url()
        r = run_node_driver(tmp, DRIVER, node_modules, [log_url, live_url, chromium], 180, TZ="UTC")
        print(r.stdout[-2000:], r.stderr[-2000:])
        if r.returncode != 0:
            fail("the browser run failed")
        stop_vigild(v, plc)
        ro.terminate()
        if ro.wait() != 0:
            fail("vigild --review-only did not stop cleanly")
    print("PASS: trends view with the p-chart and its flagged hour, by shift, without "
          "charts, and the alarm banner of a live line")


main()
