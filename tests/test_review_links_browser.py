#!/usr/bin/python3
"""What the review page is asked for, and by which inspection, in headless
Debian chromium driven by playwright-core (npm), against vigild
--review-only over a log whose part ids 1 to 3 were used twice (the line's
counter started over): QA acceptance D2, D6, D9 and D12.

The API first: every time it shows is the station's local time (vigild
in Asia/Kolkata), the list's as the CSV's; GET /api/parts/1 is the newer
inspection of part 1,
?inspection=ID the one named (its image under a URL that names it too, its
own reviews only), 404 for another part's inspection, 400 for one that is
not a number; POST /api/parts/2/review?inspection=ID reviews the older
inspection of part 2, POST /api/parts/3/escape?inspection=ID marks the
older inspection of part 3 as an escape (404 with another part's), and
vigilctl review and escapes --mark take --inspection alike.

On the page (D2): the list shows both inspections of part 1; a click on the
older row opens it (its time, its image) and its review, and an escape
marked while it is open, are stored on it, not on the newer one. D9: opening a part puts open= and inspection= in the
address as a history entry, Back closes the part and stays on the page,
forward opens it again, the address opens it. D12: after o (the focus in
the verdict list) and Enter, Esc closes the part; Esc in the note does not.
D6: an address value the form cannot take (verdict=rejected,
since=yesterday, a mistyped parameter, open=abc, trends_bucket=week) is
said, naming the parameter and what it takes, and no list (no trends) is
shown in place of the one asked for; a date alone is taken; a score typed
as abc empties the list and says so in view.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (`make web-test-deps`).

usage: test_review_links_browser.py BUILD_DIR
"""
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

from linetest import Vigild, browser_tools, fail, log_rows, run_node_driver, workdir

build = sys.argv[1]
TOKEN = "links-test-token-42"
BASE_US = 1_795_000_000_000_000
ZONE = "Asia/Kolkata"   # the station's zone: +05:30, never the test machine's

chromium, node_modules = browser_tools(build)

DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, token, executablePath, argsJson] = process.argv.slice(2);
const a = JSON.parse(argsJson);
const T = { timeout: 20000 };
const waitText = (page, sel, re) => page.waitForFunction(([sel, src]) => {
  const e = document.querySelector(sel);
  return e && new RegExp(src).test(e.textContent);
}, [sel, re], T);
const params = (page) => new URL(page.url()).searchParams;
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const errors = [];
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  let page = await context.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));

  // ---- D2: the inspection clicked is the one opened and reviewed ----
  await page.goto(url + "?part=1");
  await page.waitForFunction(() => document.querySelectorAll("#inspections tbody tr").length === 2,
    null, T);
  const rows = await page.$$eval("#inspections tbody tr",
    (t) => t.map((r) => r.dataset.inspection));
  if (rows.join() !== [a.newer, a.older].join()) throw new Error("rows of part 1: " + rows);
  const historyBefore = await page.evaluate(() => history.length);
  await page.click(`#inspections tbody tr[data-inspection="${a.older}"]`);
  await page.waitForSelector("#detail:not([hidden])", T);
  await waitText(page, "#d-fields", "time" + a.olderTime.replace(/[.+]/g, "\\$&"));
  // The older inspection's own image (the newer one kept none).
  await page.waitForFunction(() => {
    const c = document.querySelector("#d-media canvas.part-image");
    return c && c.width === 64 && c.height === 48;
  }, null, T);
  // D9: a history entry naming the part and the inspection.
  let q = params(page);
  if (q.get("open") !== "1" || q.get("inspection") !== String(a.older) || q.get("part") !== "1")
    throw new Error("the address of the open part: " + page.url());
  if ((await page.evaluate(() => history.length)) !== historyBefore + 1)
    throw new Error("opening a part added no history entry");
  await page.fill("#review input[name=token]", token);
  await page.check("#review input[value=overrule]");
  await page.selectOption("#review select[name=verdict]", "accept");
  await page.fill("#review input[name=note]", "the older one");
  await page.click("#review button[type=submit]");
  await waitText(page, "#review-result", "^saved: overrule → accept");
  const review = (id) =>
    page.textContent(`#inspections tbody tr[data-inspection="${id}"] td.review`);
  if ((await review(a.older)) !== "overrule → accept" || (await review(a.newer)) !== "")
    throw new Error("review column: older " + await review(a.older) + ", newer " +
      await review(a.newer));
  // An escape marked while the older inspection is open goes to it too.
  await page.waitForFunction(() =>
    document.querySelector("#trace-mark input[name=part]").value === "1", null, T);
  await page.fill("#trace-mark input[name=note]", "escape of the older one");
  await page.click("#trace-mark button[type=submit]");
  await waitText(page, "#trace-mark-result", "^saved: escape \\d+ \\(part 1, inspection " +
    a.older + "\\)");

  // ---- D9: Back closes the part, forward opens it again ----
  await page.goBack();
  await page.waitForSelector("#detail", { state: "hidden", ...T });
  q = params(page);
  if (q.has("open") || q.get("part") !== "1") throw new Error("after Back: " + page.url());
  await page.goForward();
  await page.waitForSelector("#detail:not([hidden])", T);
  await waitText(page, "#d-fields", "inspection" + a.older);

  // ---- D12: Esc after o and Enter, not in the note ----
  await page.focus("#review input[name=note]");
  await page.keyboard.press("Escape");
  if (await page.isHidden("#detail")) throw new Error("Esc in the note closed the part");
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press("o");
  if (!(await page.evaluate(() => document.activeElement.name === "verdict")))
    throw new Error("o did not put the focus in the verdict list");
  await page.selectOption("#review select[name=verdict]", "marginal");
  await page.keyboard.press("Enter");
  await waitText(page, "#review-result", "^saved: overrule → marginal");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#detail", { state: "hidden", ...T });
  // Closing goes back over the part's history entry.
  await page.waitForFunction(() => !new URLSearchParams(location.search).has("open"), null, T);

  // The address opens the part (a link sent), Back from a fresh tab's
  // first part closes it rather than leaving the page.
  await page.goto(url + "?part=2&open=2&inspection=" + a.olderOf2);
  await waitText(page, "#d-fields", "inspection" + a.olderOf2);
  page = await context.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url + "?verdict=reject");
  await page.waitForSelector("#inspections tbody tr", T);
  await page.click("#inspections tbody tr");
  await page.waitForSelector("#detail:not([hidden])", T);
  await page.goBack();
  await page.waitForSelector("#detail", { state: "hidden", ...T });
  if (page.url() !== url + "?verdict=reject") throw new Error("Back went to " + page.url());

  // ---- D6: what the address asks for, said ----
  const refused = async (query, want) => {
    await page.goto(url + query);
    await waitText(page, "#list-error", want);
    await page.waitForSelector("#list-error:not([hidden])", T);
    // Not another list passing for the one asked for: none once the
    // status has answered.
    await waitText(page, "#st-parts", "^8$");
    if (await page.$("#inspections tbody tr")) throw new Error(query + ": a list is shown");
    if (!/^no list/.test(await page.textContent("#list-count")))
      throw new Error(query + ": the count says " + await page.textContent("#list-count"));
  };
  await refused("?verdict=rejected",
    "verdict=rejected in the address: verdict is one of accept, reject, marginal");
  await refused("?since=yesterday",
    "since=yesterday in the address: since is a local date and time");
  await refused("?verdcit=reject", "unknown parameter verdcit");
  await refused("?open=abc", "open=abc in the address: open is the id of the part");
  await page.goto(url + "?trends_bucket=week");
  await waitText(page, "#trends-error",
    "trends_bucket=week in the address: trends_bucket is one of hour, shift");
  if (await page.$("#trends-table tbody tr")) throw new Error("trends shown for a refused view");
  // A date alone is its midnight.
  await page.goto(url + "?since=2020-01-01");
  await page.waitForFunction(() => document.querySelectorAll("#inspections tbody tr").length === 8,
    null, T);
  if ((await page.inputValue("#filters input[name=since]")) !== "2020-01-01T00:00")
    throw new Error("since=2020-01-01 not taken");
  // Typed: the error in view, no rows of the filter before.
  await page.fill("#filters input[name=min_score]", "abc");
  await page.click("#filters button[type=submit]");
  await waitText(page, "#list-error", "min_score is a number from 0 to 1");
  await waitText(page, "#list-count", "^no list");
  if (await page.$("#inspections tbody tr"))
    throw new Error("the rows before stay under the error");
  const box = await page.$eval("#list-error", (e) => {
    const r = e.getBoundingClientRect();
    return [r.top, r.bottom, window.innerHeight];
  });
  if (box[0] < 0 || box[1] > box[2]) throw new Error("the error is out of view: " + box);
  await page.fill("#filters input[name=min_score]", "");
  await page.click("#filters button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#inspections tbody tr").length === 8,
    null, T);
  if (!(await page.isHidden("#list-error"))) throw new Error("the error stays");
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  await browser.close();
  console.log("DONE");
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def make_log(tmp):
    """Parts 1 to 5 rejected, then parts 1 to 3 again an hour later,
    accepted (the line's part counter started over); the older inspection
    of part 1 kept a 64x48 image, the newer none. The row ids by part:
    {part: [older, newer]}."""
    import cv2
    import numpy as np

    db = os.path.join(tmp, "vigil.db")
    subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", db, "upgrade"], check=True,
                   capture_output=True, timeout=30)
    con = sqlite3.connect(db)
    rows = [(i, BASE_US + i * 1_000_000, "reject", 2, "surface", 0.9) for i in range(1, 6)]
    rows += [(i, BASE_US + 3_600_000_000 + i * 1_000_000, "accept", 1, "none", 0.1)
             for i in range(1, 4)]
    con.executemany("INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us,"
                    " verdict, verdict_code, defect_class, flags, score, vision_score,"
                    " signal_score, latency_ms, infer_ms, model_version, image_path)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0.1, 2.0, 1.0, 'synthetic-1', NULL)",
                    [(p, p, p, t, v, c, k, s, s) for (p, t, v, c, k, s) in rows])
    ids = {}
    for (iid, part) in con.execute("SELECT id, part_id FROM inspections ORDER BY id"):
        ids.setdefault(part, []).append(iid)
    (media_dir,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
    os.makedirs(os.path.join(media_dir, "test-media"), exist_ok=True)
    path = os.path.join(media_dir, "test-media", "part-1-older.png")
    cv2.imwrite(path, np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)))
    con.execute("INSERT INTO media (inspection_id, camera, kind, path, bytes)"
                " VALUES (?, 'top', 'image', 'test-media/part-1-older.png', ?)",
                (ids[1][0], os.path.getsize(path)))
    con.commit()
    con.close()
    return db, ids


def call(url, body=None):
    """(status, answer): JSON, or the bytes of a file."""
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        data, status = e.read(), e.code
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def check_times(url):
    """Every time the API shows is the station's local time (vigild runs
    with TZ=Asia/Kolkata, +05:30), the list's as the CSV's."""
    import csv
    import datetime
    import io
    import zoneinfo

    zone = zoneinfo.ZoneInfo(ZONE)
    rows = call(url + "api/inspections?part=1")[1]["inspections"]
    table = list(csv.DictReader(io.StringIO(call(url + "api/inspections.csv?part=1")[1].decode(),
                                            newline="")))
    for r, c in zip(rows, table):
        want = datetime.datetime.fromtimestamp(r["t_wall_us"] // 1_000_000, zone).isoformat()
        if r["time"] != want or c["time"][:19] + c["time"][-6:] != want:
            fail(f"times of inspection {r['id']}: list {r['time']}, CSV {c['time']}, want {want}")


def check_vigilctl(db, ids):
    """vigilctl review and escapes --mark take --inspection as the API
    takes ?inspection=: the older inspection of parts 3 and 2; another
    part's is refused (1), a bad value too (2), nothing written."""
    ctl = os.path.join(build, "tools", "vigilctl")

    def run(*args):
        return subprocess.run([ctl, "--db", db, *args], capture_output=True, text=True,
                              timeout=60)
    r = run("review", "--part", "3", "--inspection", str(ids[3][0]), "--confirm",
            "--note", "cli, older")
    if r.returncode != 0:
        fail(f"vigilctl review --inspection: {r.returncode} {r.stderr}")
    r = run("escapes", "--mark", "--part", "2", "--inspection", str(ids[2][0]),
            "--note", "cli, older escape")
    if r.returncode != 0:
        fail(f"vigilctl escapes --mark --inspection: {r.returncode} {r.stderr}")
    r = run("review", "--part", "3", "--inspection", str(ids[2][0]), "--confirm")
    if r.returncode != 1 or f"no inspection {ids[2][0]} of part 3" not in r.stderr:
        fail(f"vigilctl review with part 2's inspection: {r.returncode} {r.stderr}")
    r = run("escapes", "--mark", "--part", "3", "--inspection", "abc", "--note", "x")
    if r.returncode != 2 or "--inspection" not in r.stderr or r.stdout:
        fail(f"vigilctl escapes --inspection abc: {r.returncode} {r.stderr}")


def check_api(url, ids):
    older, newer = ids[1]
    status, d = call(url + "api/parts/1")
    if status != 200 or d["inspection"]["id"] != newer or d["media"]:
        fail(f"GET /api/parts/1: {status} {d}")
    status, d = call(url + f"api/parts/1?inspection={older}")
    if status != 200 or d["inspection"]["id"] != older or len(d["media"]) != 1:
        fail(f"GET /api/parts/1?inspection={older}: {status} {d}")
    image = d["media"][0]["url"]
    if not image.endswith(f"?inspection={older}"):
        fail(f"the older inspection's image URL does not name it: {image}")
    status, png = call(url + image.lstrip("/"))
    if status != 200 or not isinstance(png, bytes) or not png.startswith(b"\x89PNG"):
        fail(f"GET {image}: {status}")
    status, d = call(url + f"api/parts/1?inspection={ids[2][0]}")
    if status != 404 or d["error"] != f"no inspection {ids[2][0]} of part 1":
        fail(f"part 1 with part 2's inspection: {status} {d}")
    status, d = call(url + "api/parts/1?inspection=abc")
    if status != 400 or "inspection is an inspection's id" not in d["error"]:
        fail(f"inspection=abc: {status} {d}")
    status, d = call(url + f"api/parts/2/review?inspection={ids[2][0]}",
                     {"decision": "confirm", "note": "api, older"})
    if status != 200 or d["inspection_id"] != ids[2][0] or d["verdict"] != "reject":
        fail(f"POST /api/parts/2/review?inspection={ids[2][0]}: {status} {d}")
    status, d = call(url + f"api/parts/2/review?inspection={ids[3][0]}",
                     {"decision": "confirm"})
    if status != 404:
        fail(f"a review of part 2 with part 3's inspection: {status} {d}")
    for iid, want in ((ids[2][0], ["api, older"]), (ids[2][1], [])):
        status, d = call(url + f"api/parts/2?inspection={iid}")
        if [r["note"] for r in d["reviews"]] != want:
            fail(f"reviews of inspection {iid}: {d['reviews']}")
    status, d = call(url + f"api/parts/3/escape?inspection={ids[3][0]}",
                     {"note": "api, older escape"})
    if status != 200 or d["inspection_id"] != ids[3][0]:
        fail(f"POST /api/parts/3/escape?inspection={ids[3][0]}: {status} {d}")
    status, d = call(url + f"api/parts/3/escape?inspection={ids[2][0]}", {"note": "x"})
    if status != 404 or d["error"] != f"no inspection {ids[2][0]} of part 3":
        fail(f"an escape of part 3 with part 2's inspection: {status} {d}")


def main():
    with workdir("vigil-links-browser-") as tmp:
        db, ids = make_log(tmp)
        conf = os.path.join(tmp, "review.conf")
        with open(conf, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                    f"token = {TOKEN}\n")
        vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), ["--review-only"],
                        env={"TZ": ZONE})
        url = vigild.review_url()
        check_times(url)
        check_api(url, ids)
        (older_time,) = [r["time"] for r in call(url + "api/inspections?part=1")[1]["inspections"]
                         if r["id"] == ids[1][0]]
        args = dict(older=ids[1][0], newer=ids[1][1], olderTime=older_time, olderOf2=ids[2][0])
        r = run_node_driver(tmp, DRIVER, node_modules, [url, TOKEN, chromium, json.dumps(args)],
                            180)
        print(r.stdout[-2000:], r.stderr[-3000:])
        if r.returncode != 0:
            fail("the browser run failed")
        check_vigilctl(db, ids)
        got = log_rows(db, "SELECT inspection_id, decision, verdict, note FROM reviews ORDER BY id")
        want = [(ids[2][0], "confirm", "reject", "api, older"),
                (ids[1][0], "overrule", "accept", "the older one"),
                (ids[1][0], "overrule", "marginal", None),
                (ids[3][0], "confirm", "reject", "cli, older")]
        if got != want:
            fail(f"reviews stored: {got}, want {want}")
        got = log_rows(db, "SELECT inspection_id, note FROM escapes ORDER BY id")
        want = [(ids[3][0], "api, older escape"), (ids[1][0], "escape of the older one"),
                (ids[2][0], "cli, older escape")]
        if got != want:
            fail(f"escapes stored: {got}, want {want}")
        vigild.stop(timeout=30)
    print("PASS: the inspection clicked is the one opened and reviewed (API ?inspection=); "
          "Back closes the part; Esc after o; the address's bad values said")


main()
