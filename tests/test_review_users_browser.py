#!/usr/bin/python3
"""Issue 23, "who did what", in headless Debian chromium driven by
playwright-core (npm), against vigild --review-only over a real SQLite log
whose users vigilctl user add made.

Reads open: the page says nobody is signed in; signing in with a
reviewer's token says "signed in as rita (reviewer)" and hides the
free-text reviewer field; her overrule of part 3 appears in the part's
review history under her name; a viewer's review is refused (403, naming
the role reviewer); an admin's confirmation goes on top of the history.
read_requires_token: the list is refused until a viewer signs in, then it
lists, and part 3's image (fetched with the token, drawn at its size) and
history show; the rest the token reads loads with the sign-in, no reload
of the page needed (QA acceptance D3): the shift and model filters' choices,
the trends; the Plant section, which this server has none of, stays hidden
before and after. With a users file the escape form's reporter field is
hidden as the review form's reviewer field is (D11).

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (`make web-test-deps`).

usage: test_review_users_browser.py BUILD_DIR
"""
import os
import sqlite3
import subprocess
import sys

from linetest import (Vigild, add_part_media, browser_tools, fail, rejects_log, run_node_driver,
                      workdir)

build = sys.argv[1]
ctl = os.path.join(build, "tools", "vigilctl")

chromium, node_modules = browser_tools(build)

DRIVER = r"""
const { chromium } = require("playwright-core");
const [openUrl, closedUrl, rita, vera, adam, executablePath] = process.argv.slice(2);
const T = { timeout: 15000 };
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const errors = [];
  const who = (page, re) => page.waitForFunction(
    (src) => new RegExp(src).test(document.querySelector("#users-who").textContent), re, T);
  const signIn = async (page, token) => {
    await page.fill("#users-token", token);
    await page.click("#users-signin button[type=submit]");
  };
  // The part's 64x48 image drawn (a canvas is 300 wide until it is).
  const imageShown = (page) => page.waitForFunction(() => {
    const c = document.querySelector("#d-media canvas.part-image");
    return c && c.width === 64 && c.height === 48;
  }, null, T);
  const history = (page) => page.$$eval("#users-history tbody tr",
    (trs) => trs.map((tr) => Array.from(tr.cells).map((td) => td.textContent)));

  // Reads open, a users file.
  let page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(openUrl);
  await page.waitForSelector("#inspections tbody tr", T);
  await who(page, "^not signed in$");
  await signIn(page, "not-anyones-token-000");
  await who(page, "sign-in refused: the token is not a known one");
  await signIn(page, rita);
  await who(page, "^signed in as rita \\(reviewer\\)$");
  await page.click("#inspections tbody tr[data-part='3']");
  await page.waitForSelector("#detail:not([hidden])");
  await page.waitForSelector("#users-history .users-none:not([hidden])", T);
  await imageShown(page);
  if (await page.isVisible("#review input[name=reviewer]"))
    throw new Error("the free-text reviewer field shows although the server names the user");
  if (await page.isVisible("#trace-mark input[name=reporter]"))
    throw new Error("the free-text reporter field shows although the server names the user");
  await page.check("#review input[value=overrule]");
  await page.selectOption("#review select[name=verdict]", "accept");
  await page.fill("#review input[name=note]", "fixture mark, <i>not</i> a scratch");
  await page.click("#review button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#review-result").textContent.startsWith("saved: overrule"), null, T);
  await page.waitForFunction(() => document.querySelectorAll("#users-history tbody tr").length === 1, null, T);
  let h = await history(page);
  if (h[0][1] !== "rita" || h[0][2] !== "overrule" || h[0][3] !== "accept" ||
      h[0][4] !== "fixture mark, <i>not</i> a scratch" || !/^\d{4}-\d\d-\d\dT/.test(h[0][0]))
    throw new Error("history after rita's review: " + JSON.stringify(h));

  await signIn(page, vera);
  await who(page, "^signed in as vera \\(viewer\\)$");
  await page.check("#review input[value=confirm]");
  await page.click("#review button[type=submit]");
  await page.waitForFunction(() => /refused \(403\).*reviewer/.test(document.querySelector("#review-result").textContent), null, T);

  await signIn(page, adam);
  await who(page, "^signed in as adam \\(admin\\)$");
  await page.fill("#review input[name=note]", "seen twice");
  await page.click("#review button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#users-history tbody tr").length === 2, null, T);
  h = await history(page);
  if (h[0][1] !== "adam" || h[0][2] !== "confirm" || h[1][1] !== "rita")
    throw new Error("history is not newest first with who: " + JSON.stringify(h));
  if (process.env.VIGIL_SCREENSHOT)
    await page.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  await page.close();

  // Reads need a token.
  page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(closedUrl);
  await page.waitForFunction(() => !document.querySelector("#list-error").hidden, null, T);
  await who(page, "reading needs a token");
  if (await page.$("#inspections tbody tr")) throw new Error("listed without a token");
  await page.waitForSelector("#trends-error:not([hidden])", T);
  // Whether the server has a Plant view is not known without a token:
  // the section stays hidden (its request answered first).
  await page.waitForFunction(() => performance.getEntriesByType("resource")
    .some((e) => /\/api\/plant$/.test(e.name) && e.responseEnd > 0), null, T);
  if (await page.isVisible("#plant")) throw new Error("a Plant section before the sign-in");
  await signIn(page, vera);
  await who(page, "^signed in as vera \\(viewer\\)$");
  await page.waitForSelector("#inspections tbody tr[data-part='3']", T);
  // What the token reads loads with the sign-in, without a reload.
  await page.waitForFunction(() =>
    document.querySelectorAll("#filters select[name=shift] option").length > 1 &&
    Array.from(document.querySelectorAll("#filters select[name=model] option"))
      .some((o) => o.value === "synthetic-1"), null, T);
  await page.waitForSelector("#trends-error", { state: "hidden", ...T });
  await page.waitForFunction(() => /centre line/.test(
    document.querySelector("#trends-summary").textContent), null, T);
  if (await page.isVisible("#plant")) throw new Error("a Plant section after the sign-in");
  await page.click("#inspections tbody tr[data-part='3']");
  await imageShown(page);
  await page.waitForFunction(() => document.querySelectorAll("#users-history tbody tr").length === 2, null, T);
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  await browser.close();
  console.log("DONE");
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def vigilctl(*args):
    p = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        fail(f"vigilctl {' '.join(args)}: rc {p.returncode}: {p.stderr}")
    return p.stdout


def main():
    import cv2
    import numpy as np

    with workdir("vigil-users-browser-") as tmp:
        db = rejects_log(build, os.path.join(tmp, "vigil.db"))
        sim_dir = os.path.join(tmp, "sim")
        os.makedirs(os.path.join(sim_dir, "images"))
        cv2.imwrite(os.path.join(sim_dir, "images", "part-00003.png"),
                    np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)))
        add_part_media(db, sim_dir, 3, 100.0)
        users = os.path.join(tmp, "users")
        tok = {n: vigilctl("user", "add", n, "--role", r, "--users", users).strip()
               for n, r in (("rita", "reviewer"), ("vera", "viewer"), ("adam", "admin"))}
        urls = []
        for name, extra in (("open", ""), ("closed", "read_requires_token = true\n")):
            conf = os.path.join(tmp, name + ".conf")
            with open(conf, "w") as f:
                f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                        f"users_file = {users}\n{extra}")
            urls.append(Vigild(build, conf, os.path.join(tmp, name + ".log"),
                               ["--review-only"]).review_url())
        r = run_node_driver(tmp, DRIVER, node_modules,
                            [*urls, tok["rita"], tok["vera"], tok["adam"], chromium], 180)
        print(r.stdout[-2000:], r.stderr[-2000:])
        if r.returncode != 0:
            fail("the browser run failed")
        con = sqlite3.connect(db)
        rows = con.execute("SELECT i.part_id, r.decision, r.verdict, r.reviewer FROM reviews r"
                           " JOIN inspections i ON i.id = r.inspection_id ORDER BY r.id").fetchall()
        con.close()
        if rows != [(3, "overrule", "accept", "rita"), (3, "confirm", "reject", "adam")]:
            fail(f"reviews in the database: {rows}")
    print("PASS: sign-in, reviews named by user, 403 for a viewer, history, read_requires_token")


main()
