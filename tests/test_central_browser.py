#!/usr/bin/python3
"""The Plant view (app/web/plant.js) in headless Debian chromium, driven by
playwright-core (npm), on the plant office's `vigild --review-only` with
[review] central over a PostgreSQL this test starts (tests/pgtest.py),
filled with four stations' rows in the schema's format as
tests/test_central.py fills it:
  - the stations table lists every station with its figures (host,
    backlog, lag, model, today's rows and yield);
  - the site / line / station filters narrow the inspections list, the
    URL keeps them (plant_site, plant_line, plant_station: the page keeps
    its other filters there too), a reload with
    that URL shows the same list, and a click on a station filters to it;
  - a central review from the view is refused without a token and, once
    signed in with the reviewer's token, lands in the central reviews
    table with origin central and shows in the list;
  - no console errors, and no horizontal scroll at 1440x900 and 820x1180.

Skips (exit 77) when /usr/bin/chromium or npm is missing, as
test_review_browser.py does; fails when npm is there but playwright-core
was not installed. A missing PostgreSQL fails naming its Debian package.

usage: test_central_browser.py BUILD_DIR SOURCE_ROOT
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linetest  # noqa: E402
import pgtest  # noqa: E402
import test_central as tc  # noqa: E402  (its rows, and the office's configuration)
from linetest import browser_tools, fail, run_node_driver  # noqa: E402

build = sys.argv[1]
TOKEN = "plant-office-browser-token"
NOTE = "from the plant view <b>"

chromium, node_modules = browser_tools(build)

# Prints one JSON object of what the page showed; the test judges it. A
# step that cannot happen (a selector never shows) fails here.
DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, token, executablePath, note] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const out = { errors: [], refusalErrors: [], failed: [] };
  let expect401 = false;
  page.on("pageerror", (e) => out.errors.push("pageerror: " + String(e)));
  // Chromium's console line for a failed load names no URL: these do.
  page.on("response", (r) => { if (r.status() >= 400) out.failed.push(r.status() + " " + r.url()); });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // The refused review is meant to fail: chromium logs its 401.
    if (expect401 && /status of 401/.test(m.text())) out.refusalErrors.push(m.text());
    else out.errors.push("console: " + m.text() + " (" + m.location().url + ")");
  });
  const rows = (id) => page.$$eval("#" + id + " tbody tr", (trs) =>
    trs.map((tr) => Array.from(tr.cells).map((td) => td.textContent)));
  const keys = () => page.$$eval("#plant-inspections tbody tr",
                                 (trs) => trs.map((tr) => tr.dataset.key));
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth -
                                             document.documentElement.clientWidth);
  const shown = async (what) => {
    try {
      await page.waitForFunction((w) => document.querySelector("#plant-count").dataset.query === w,
                                 what, { timeout: 15000 });
    } catch (e) {
      const now = await page.evaluate(() => [document.querySelector("#plant-count").dataset.query,
                                             location.href]);
      throw new Error("the list never showed " + what + " (shows " + now[0] + ", at " + now[1] + ")");
    }
    return keys();
  };

  await page.goto(url);
  await page.waitForSelector("#plant:not([hidden]) #plant-stations tbody tr", { timeout: 15000 });
  await page.waitForSelector("#plant-inspections tbody tr", { timeout: 15000 });
  out.stations = await rows("plant-stations");
  out.all = await keys();
  out.overflowWide = await overflow();

  // The filters: site and line, then the station too.
  await page.fill("#plant-filters input[name=site]", "north");
  await page.fill("#plant-filters input[name=line]", "L1");
  await page.click("#plant-filters button[type=submit]");
  out.northL1 = await shown("site=north&line=L1");
  out.urlNorthL1 = page.url();
  await page.fill("#plant-filters input[name=station]", "S2");
  await page.click("#plant-filters button[type=submit]");
  out.northL1S2 = await shown("site=north&line=L1&station=S2");
  out.urlNorthL1S2 = page.url();
  // The URL reopens the same view.
  await page.goto(out.urlNorthL1S2);
  out.reloaded = await shown("site=north&line=L1&station=S2");
  out.reloadedForm = await page.$eval("#plant-filters", (f) =>
    [f.elements.site.value, f.elements.line.value, f.elements.station.value]);
  // A click on a station shows that station's inspections.
  await page.click("#plant-stations tbody tr:nth-child(4)");
  out.clicked = await shown("site=south&line=L1&station=S1");

  // A central review: refused without a token, saved once signed in. The
  // row is a reject: overruled to accept (to reject would be refused, the
  // line's own verdict).
  await page.fill("#plant-filters input[name=site]", "north");
  await page.fill("#plant-filters input[name=line]", "L2");
  await page.fill("#plant-filters input[name=station]", "S1");
  await page.click("#plant-filters button[type=submit]");
  await shown("site=north&line=L2&station=S1");
  await page.fill("#plant-note", note);
  const row = "#plant-inspections tr[data-key='north/L2/S1/4']";
  expect401 = true;
  await page.selectOption(row + " select", "accept");
  await page.waitForSelector("#plant-error:not([hidden])", { timeout: 15000 });
  out.refused = await page.textContent("#plant-error");
  out.selectAfterRefusal = await page.$eval(row + " select", (s) => s.value);
  expect401 = false;
  await page.fill("#users-token", token);
  await page.click("#users-signin button[type=submit]");
  // Sign-in asks the server first (whoami), as a person sees it answer
  // before choosing: a review sent before the answer goes without the
  // token and is refused again.
  await page.waitForFunction(() => /signed in as/.test(document.querySelector("#users-who").textContent),
                             null, { timeout: 15000 });
  await page.selectOption(row + " select", "accept");
  await page.waitForFunction((sel) => {
    const tr = document.querySelector(sel);
    return tr && /overrule → accept \(central\)/.test(tr.textContent);
  }, row, { timeout: 15000 });
  out.errorAfterSave = await page.$eval("#plant-error", (e) => e.hidden ? "" : e.textContent);
  // Confirm clicked twice in a row on another row: stored once (the
  // second click meets the button disabled while the first is on its way).
  const other = await page.$eval("#plant-inspections tbody tr:not([data-key='north/L2/S1/4'])",
                                 (tr) => tr.dataset.key);
  await page.$eval(`#plant-inspections tr[data-key='${other}'] button`, (b) => {
    b.click();
    b.click();
  });
  await page.waitForFunction((sel) => {
    const tr = document.querySelector(sel);
    return tr && /confirm → \w+ \(central\)/.test(tr.textContent);
  }, `#plant-inspections tr[data-key='${other}']`, { timeout: 15000 });
  out.confirmedTwice = Number(other.split("/")[3]);

  // A tablet, portrait: the page still fits its width.
  await page.setViewportSize({ width: 820, height: 1180 });
  await page.waitForTimeout(0);
  out.overflowTablet = await overflow();
  if (process.env.VIGIL_SCREENSHOT)  // to look at the page: VIGIL_SCREENSHOT=plant.png
    await page.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  console.log("RESULT " + JSON.stringify(out));
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def station_figures(rows, midnight):
    """The stations table as the page should show it, from what
    tc.fill wrote: host, backlog, lag, model, today's rows and yield."""
    want = []
    for si, (site, line, station, n) in enumerate(tc.STATIONS):
        today = [r for r in rows.values()
                 if (r["site"], r["line"], r["station"]) == (site, line, station) and
                 r["t"] >= midnight]
        accepted = sum(r["verdict"] == "accept" for r in today)
        want.append([site, line, station, f"host{si}", str(3 * si + 1), f"{0.5 * si:.1f}",
                     f"m-{site}-{si % 2}", str(len(today)),
                     f"{100 * accepted / len(today):.1f}%" if today else "–"])
    return want


def newest_first(rows, pred):
    sel = sorted((r for r in rows.values() if pred(r)),
                 key=lambda r: (-tc.us(r["t"]), r["site"], r["line"], r["station"],
                                -r["local_id"]))
    return [f"{r['site']}/{r['line']}/{r['station']}/{r['local_id']}" for r in sel]


def main():
    checks = linetest.Checks()
    with linetest.workdir("vigil-central-browser-") as tmp, \
            pgtest.server("vigil-central-browser-pg-") as pg:
        env, ci, passfile = tc.plant_db(pg, tmp)
        tc.run(env, ci, "upgrade")
        rows, midnight = tc.fill(pg, ci)
        vigild = linetest.Vigild(build, tc.office_conf(tmp, ci + f" passfile={passfile}", TOKEN),
                                 os.path.join(tmp, "office.log"), ["--review-only"],
                                 env={"TZ": "UTC"})
        try:
            url = vigild.review_url()
            r = run_node_driver(tmp, DRIVER, node_modules, [url, TOKEN, chromium, NOTE], 180,
                                TZ="UTC")
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                fail(f"the browser run failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")
            out = json.loads(line[0][len("RESULT "):])
            reviews = pg.query("plant", "SELECT origin, local_id, inspection_local_id, decision,"
                               " verdict, note, reviewer FROM reviews WHERE site = 'north'"
                               " AND line = 'L2' AND station = 'S1' AND decision = 'overrule'")
            confirms = pg.query("plant", "SELECT inspection_local_id FROM reviews WHERE"
                                " site = 'north' AND line = 'L2' AND station = 'S1'"
                                " AND decision = 'confirm'")
        finally:
            checks.check(vigild.stop() == 0, "vigild --review-only did not stop cleanly")

    # Every station and its figures; the last-seen time is the server's now().
    got = [s[:4] + s[5:] for s in out["stations"]]
    checks.check(got == station_figures(rows, midnight),
                 f"stations table: {got} != {station_figures(rows, midnight)}")
    checks.check(all(s[4] not in ("", "–") for s in out["stations"]),
                 f"last seen missing: {out['stations']}")
    checks.check(out["all"] == newest_first(rows, lambda r: True),
                 f"unfiltered list: {out['all']}")
    north_l1 = newest_first(rows, lambda r: (r["site"], r["line"]) == ("north", "L1"))
    s2 = newest_first(rows, lambda r: (r["site"], r["line"], r["station"]) ==
                      ("north", "L1", "S2"))
    south = newest_first(rows, lambda r: r["site"] == "south")
    checks.check(out["northL1"] == north_l1 and len(north_l1) < len(out["all"]),
                 f"site=north line=L1: {out['northL1']} != {north_l1}")
    checks.check(out["northL1S2"] == s2, f"station S2: {out['northL1S2']} != {s2}")
    checks.check(out["urlNorthL1"].endswith("?plant_site=north&plant_line=L1"),
                 f"the URL does not keep the filters: {out['urlNorthL1']}")
    checks.check(out["urlNorthL1S2"].endswith("?plant_site=north&plant_line=L1&plant_station=S2"),
                 f"the URL does not keep the filters: {out['urlNorthL1S2']}")
    checks.check(out["reloaded"] == s2 and out["reloadedForm"] == ["north", "L1", "S2"],
                 f"the URL reopened: {out['reloaded']} {out['reloadedForm']}")
    checks.check(out["clicked"] == south, f"a click on south/L1/S1: {out['clicked']}")
    checks.check("token" in out["refused"].lower(),
                 f"a review without a token: {out['refused']!r}")
    checks.check(out["selectAfterRefusal"] == "",
                 f"a refused overrule still shows as chosen: {out['selectAfterRefusal']!r}")
    checks.check(out["errorAfterSave"] == "", f"an error after the save: {out['errorAfterSave']}")
    checks.check(len(reviews) == 1 and reviews[0][:6] ==
                 ("central", None, 4, "overrule", "accept", NOTE) and reviews[0][6],
                 f"the central reviews table: {reviews}")
    checks.check(confirms == [(out["confirmedTwice"],)],
                 f"confirm clicked twice on {out['confirmedTwice']}: central reviews {confirms}")
    checks.check(not out["errors"], f"console errors: {out['errors']} (failed loads: "
                 f"{out['failed']})")
    checks.check(out["overflowWide"] <= 0, f"horizontal scroll at 1440x900: "
                 f"{out['overflowWide']} px")
    checks.check(out["overflowTablet"] <= 0, f"horizontal scroll at 820x1180: "
                 f"{out['overflowTablet']} px")
    checks.finish()
    print("PASS: the Plant view in chromium: stations and their figures, filters in the URL, "
          "a central review saved with origin central, no console errors, no sideways scroll")


main()
