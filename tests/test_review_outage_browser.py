#!/usr/bin/python3
"""The review page when vigild stalls or goes away, in headless Debian
chromium driven by playwright-core (npm), against vigild --review-only over
a small SQLite log (QA acceptance, D1 and D8).

Stalled (SIGSTOP, the page's request timeout set to 3 s for the test
through localStorage "vigil-fetch-timeout-ms"): Save says the review was
NOT saved and why, never stays at "saving…", keeps the decision, verdict
and note, the bar at the foot says vigild is not answering and the status
line is marked stale; once vigild runs again (SIGCONT) the bar goes and
one click on Save stores exactly one review, whether or not vigild took
the try that timed out.

Gone (stopped, then started again on the same port): a click on another
row says that part was not opened and the panel still shows the part
before; Save and the c key say NOT saved; after the restart one Save
stores it.

Twice (D8): with vigild stalled, Save clicked twice, Enter in the note and
c, and "Mark as escape" clicked twice, store one review and one escape
once vigild answers; "confirm selected" on two rows that times out on the
first, pressed again once vigild answers, stores one confirm each, whether
or not vigild took the try that timed out; no uncaught error on the page
throughout.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (`make web-test-deps`).

usage: test_review_outage_browser.py BUILD_DIR
"""
import os
import signal
import sqlite3
import subprocess
import sys
import threading

from linetest import Vigild, browser_tools, fail, free_port, rejects_log, workdir

build = sys.argv[1]
TOKEN = "outage-test-token-42"

chromium, node_modules = browser_tools(build)

# The driver asks the test to stop, continue, kill or start vigild and to
# count rows ("CMD STOP" on stdout, "OK ..." on stdin), so that every step
# waits for what the page shows, never for a fixed time.
DRIVER = r"""
const { chromium } = require("playwright-core");
const readline = require("readline");
const [url, token, executablePath] = process.argv.slice(2);
const T = { timeout: 20000 };
const lines = [];
let wake = null;
readline.createInterface({ input: process.stdin }).on("line", (l) => {
  lines.push(l);
  if (wake) wake();
});
async function ask(cmd) {
  process.stdout.write("CMD " + cmd + "\n");
  while (!lines.length) await new Promise((r) => (wake = r));
  const l = lines.shift();
  if (!l.startsWith("OK")) throw new Error(cmd + ": " + l);
  return l.slice(3);
}
const result = (page) => page.textContent("#review-result");
const waitText = (page, sel, re) => page.waitForFunction(([sel, src]) => {
  const e = document.querySelector(sel);
  return e && new RegExp(src).test(e.textContent);
}, [sel, re], T);
(async () => {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const errors = [];
  const open = async (timeoutMs) => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    await context.addInitScript((ms) => localStorage.setItem("vigil-fetch-timeout-ms", ms),
      String(timeoutMs));
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForSelector("#inspections tbody tr", T);
    return page;
  };
  const openPart = async (page, part) => {
    await page.click(`#inspections tbody tr[data-part="${part}"]`);
    await waitText(page, "#d-part", "^" + part + "$");
  };

  // ---- stalled: SIGSTOP ----
  let page = await open(3000);
  await openPart(page, 3);
  await page.fill("#review input[name=token]", token);
  await page.check("#review input[value=overrule]");
  await page.selectOption("#review select[name=verdict]", "accept");
  await page.fill("#review input[name=note]", "seen while vigild was stalled");
  await ask("STOP");
  await page.click("#review button[type=submit]");
  await waitText(page, "#review-result", "^NOT saved: no answer from vigild within 3 s");
  const said = await result(page);
  if (/saving/.test(said) || !said.includes("press Save again"))
    throw new Error("stalled save: " + said);
  if (!(await page.isEnabled("#review button[type=submit]")))
    throw new Error("Save stays disabled after the timeout");
  const form = await page.evaluate(() => {
    const f = document.getElementById("review").elements;
    return [f.decision.value, f.verdict.value, f.note.value].join("|");
  });
  if (form !== "overrule|accept|seen while vigild was stalled")
    throw new Error("the form was not kept: " + form);
  await page.waitForSelector("#link-alert:not([hidden])", T);
  if (!(await page.$("#status.stale"))) throw new Error("the status line is not marked stale");
  await ask("CONT");
  await page.waitForSelector("#link-alert", { state: "hidden", ...T });
  await page.click("#review button[type=submit]");
  await waitText(page, "#review-result", "^saved: overrule → accept");
  // Either way (vigild took the try that timed out once it ran again, or
  // not) there is one review.
  console.log("after the stall: " + await result(page));
  if ((await ask("COUNT 3")) !== "1") throw new Error("reviews of part 3 after the retry");

  // ---- gone: stopped, then started again ----
  await ask("KILL");
  await page.click('#inspections tbody tr[data-part="4"]');
  await waitText(page, "#list-error", "Part 4 was not opened: vigild cannot be reached");
  await waitText(page, "#d-error", "still part 3");
  await page.waitForSelector("#link-alert:not([hidden])", T);
  if ((await page.textContent("#d-part")) !== "3") throw new Error("the panel left part 3");
  await page.fill("#review input[name=note]", "seen while vigild was down");
  await page.click("#review button[type=submit]");
  await waitText(page, "#review-result", "^NOT saved: vigild cannot be reached");
  // The c key: the same, from outside the fields.
  await page.evaluate(() => {
    document.activeElement.blur();
    document.getElementById("review-result").textContent = "";
  });
  await page.keyboard.press("c");
  await waitText(page, "#review-result", "^NOT saved: vigild cannot be reached");
  await ask("START");
  await page.waitForSelector("#link-alert", { state: "hidden", ...T });
  await page.click("#review button[type=submit]");
  await waitText(page, "#review-result", "^saved: confirm → reject");
  if ((await ask("COUNT 3")) !== "2") throw new Error("reviews of part 3 after the restart");
  await openPart(page, 4);
  await page.context().close();

  // ---- twice: clicks while the answer is on its way (D8) ----
  page = await open(60000);
  await openPart(page, 5);
  await page.fill("#review input[name=token]", token);
  await page.fill("#review input[name=note]", "clicked twice");
  await ask("STOP");
  await page.click("#review button[type=submit]");
  await page.waitForSelector("#review button[type=submit]:disabled", T);
  await page.click("#review button[type=submit]", { force: true });
  await page.press("#review input[name=note]", "Enter");
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press("c");
  await ask("CONT");
  await waitText(page, "#review-result", "^saved: confirm → reject");
  console.log("clicked twice: " + await result(page));
  if ((await ask("COUNT 5")) !== "1") throw new Error("reviews of part 5 after clicking twice");

  await page.waitForFunction(() =>
    document.querySelector("#trace-mark input[name=part]").value === "5", null, T);
  await page.fill("#trace-mark input[name=note]", "found cracked at goods-in");
  await ask("STOP");
  await page.click("#trace-mark button[type=submit]");
  await page.waitForSelector("#trace-mark button[type=submit]:disabled", T);
  await page.click("#trace-mark button[type=submit]", { force: true });
  await page.press("#trace-mark input[name=note]", "Enter");
  await ask("CONT");
  await waitText(page, "#trace-mark-result", "^saved: escape");
  if ((await ask("ESCAPES 5")) !== "1") throw new Error("escapes of part 5 after clicking twice");

  // ---- confirm selected, stalled: one confirm each after the retry ----
  await page.context().close();
  page = await open(3000);
  // The token as the review form keeps it for the session.
  await page.evaluate((t) => sessionStorage.setItem("vigil-token", t), token);
  await page.reload();
  await page.waitForSelector("#inspections tbody tr", T);
  for (const part of [1, 2])
    await page.check(`#inspections tbody tr[data-part="${part}"] td.sel input`);
  await ask("STOP");
  await page.click("#confirm-selected");
  await waitText(page, "#bulk-result", "then NOT saved from part 2 on: no answer from vigild");
  await ask("CONT");
  await page.waitForSelector("#link-alert", { state: "hidden", ...T });
  await page.click("#confirm-selected");
  await waitText(page, "#bulk-result", "^confirmed 2 parts");
  console.log("confirm selected after the stall: " + await page.textContent("#bulk-result"));
  for (const part of [1, 2])
    if ((await ask("CONFIRMS " + part)) !== "1")
      throw new Error("confirm reviews of part " + part + " after the retry");
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  await browser.close();
  console.log("DONE");
  process.exit(0);  // stdin, read for the test's answers, would keep node running
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def count(db, table, part, decision=None):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (n,) = con.execute(f"SELECT count(*) FROM {table} t JOIN inspections i"
                           " ON i.id = t.inspection_id WHERE i.part_id = ?"
                           + (" AND t.decision = ?" if decision else ""),
                           (part,) + ((decision,) if decision else ())).fetchone()
    finally:
        con.close()
    return n


def main():
    with workdir("vigil-outage-browser-") as tmp:
        db = rejects_log(build, os.path.join(tmp, "vigil.db"))
        conf = os.path.join(tmp, "review.conf")
        with open(conf, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\n"
                    f"port = {free_port()}\ntoken = {TOKEN}\n")
        starts = [0]

        def start():
            starts[0] += 1
            v = Vigild(build, conf, os.path.join(tmp, f"vigild-{starts[0]}.log"),
                       ["--review-only"])
            return v, v.review_url()

        vigild, url = start()
        driver = os.path.join(tmp, "driver.cjs")
        with open(driver, "w") as f:
            f.write(DRIVER)
        stderr = open(os.path.join(tmp, "driver.err"), "w+")
        node = subprocess.Popen(["node", driver, url, TOKEN, chromium],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, env=dict(os.environ, NODE_PATH=node_modules, HOME=tmp))
        # A failure bound on the whole run, not a wait.
        watchdog = threading.Timer(240, node.kill)
        watchdog.start()
        out = []
        try:
            for line in node.stdout:
                if not line.startswith("CMD "):
                    out.append(line)
                    continue
                cmd = line.split()[1:]
                reply = "OK"
                if cmd[0] == "STOP":
                    vigild.p.send_signal(signal.SIGSTOP)
                elif cmd[0] == "CONT":
                    vigild.p.send_signal(signal.SIGCONT)
                elif cmd[0] == "KILL":
                    vigild.stop(timeout=30)
                elif cmd[0] == "START":
                    vigild, again = start()
                    if again != url:
                        reply = f"restarted on {again}, not {url}"
                elif cmd[0] == "COUNT":
                    reply = f"OK {count(db, 'reviews', int(cmd[1]))}"
                elif cmd[0] == "ESCAPES":
                    reply = f"OK {count(db, 'escapes', int(cmd[1]))}"
                elif cmd[0] == "CONFIRMS":
                    reply = f"OK {count(db, 'reviews', int(cmd[1]), 'confirm')}"
                node.stdin.write(reply + "\n")
                node.stdin.flush()
            rc = node.wait(timeout=30)
        finally:
            watchdog.cancel()
            if vigild.running():
                vigild.p.send_signal(signal.SIGCONT)
            node.kill()
        stderr.seek(0)
        print("".join(out)[-2000:], stderr.read()[-3000:])
        if rc != 0:
            fail("the browser run failed")
        vigild.stop(timeout=30)
    print("PASS: a stalled or stopped vigild: NOT saved, said, form kept, one retry stores one"
          " review; double clicks store one review and one escape")


main()
