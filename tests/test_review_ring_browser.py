#!/usr/bin/python3
"""The recent ring on the review page, in headless Debian chromium driven by
playwright-core (npm), over a line run by vigil-sim + vigild with the
long-term sample off (keep_accepted_every = 0) and a ring big enough for the
run: an accepted part's image, kept only in the ring, is shown and says
"kept for the recent window only"; a reject's image (long-term) does not.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (as
tests/test_review_browser.py).

usage: test_review_ring_browser.py BUILD_DIR SOURCE_ROOT
"""
import sqlite3
import sys

from linetest import Line, browser_tools, fail, run_node_driver, wait_for, workdir

build, root = sys.argv[1], sys.argv[2]
TOKEN = "ring-browser-token"

chromium, node_modules = browser_tools(build)

DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, executablePath] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const errors = [];
  async function open(verdict) {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url + "?verdict=" + verdict + "&limit=50");
    await page.waitForSelector("#inspections tbody tr", { timeout: 15000 });
    await page.click("#inspections tbody tr");
    await page.waitForSelector("#detail:not([hidden])");
    await page.waitForFunction(() => {
      const c = document.querySelector("#d-media canvas.part-image");
      return c && c.width > 0;
    }, null, { timeout: 15000 });
    return page;
  }
  const acc = await open("accept");
  const note = await acc.textContent("#d-media figure");
  if (!note.includes("kept for the recent window only"))
    throw new Error("an accepted part's ring image does not say so: " + note);
  const rej = await open("reject");
  if (await rej.$("#d-media .ring-note"))
    throw new Error("a reject's long-term image is marked as the ring's");
  if (process.env.VIGIL_SCREENSHOT)
    await acc.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("OK");
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def without_image(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        n = con.execute("SELECT count(*) FROM inspections i WHERE NOT EXISTS (SELECT 1 FROM"
                        " media m WHERE m.inspection_id = i.id AND m.kind = 'image')"
                        ).fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return -1


def main():
    with workdir("vigil-ring-browser-") as tmp:
        # Appended to [database] (line_config ends with it), then [review].
        extra = ("keep_accepted_every = 0\nmedia_queue = 1024\nrecent_images_mb = 64\n"
                 f"\n[review]\nport = 0\ntoken = {TOKEN}\n")
        line = Line(build, root, tmp, 24, seed=91, split="e2e", extra_conf=extra).start()
        try:
            if line.wait_sim() != 0:
                fail("vigil-sim failed")
            url = line.review_url()
            wait_for("every part's image", lambda: without_image(line.db) == 0, poll_s=0.1)
            r = run_node_driver(tmp, DRIVER, node_modules, [url, chromium], 120)
            print(r.stdout[-2000:], r.stderr[-2000:])
            if r.returncode != 0:
                fail("the browser run failed")
        finally:
            line.stop()
    print("PASS: a ring image says it is kept for the recent window only; a reject's does not")


main()
