#!/usr/bin/python3
"""The review page in headless Debian chromium, driven by playwright-core
(npm), over a line run by vigil-sim + vigild: load the list of rejected
parts, open one, see its vibration figures, try to overrule it without the
token (refused), overrule it with the token, and find the review in the
SQLite file.

Skips (exit 77) when /usr/bin/chromium or playwright-core is missing;
`make test` installs both (Makefile: chromium in DEBIAN_PACKAGES,
playwright-core into BUILD/web-test).

usage: test_review_browser.py BUILD_DIR SOURCE_ROOT [PARTS]
"""
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

build, root = sys.argv[1], sys.argv[2]
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 40
sim_bin = os.path.join(build, "tools", "vigil-sim")
vigild_bin = os.path.join(build, "app", "vigild")
chromium = "/usr/bin/chromium"
node_modules = os.environ.get("VIGIL_NODE_MODULES", os.path.join(build, "web-test", "node_modules"))
TOKEN = "browser-test-token-42"

if not os.access(chromium, os.X_OK):
    print(f"SKIP: {chromium} is not installed (apt-get install chromium)")
    sys.exit(77)
if not os.path.isdir(os.path.join(node_modules, "playwright-core")):
    print(f"SKIP: playwright-core is not in {node_modules} "
          f"(npm install --prefix {os.path.join(build, 'web-test')} playwright-core)")
    sys.exit(77)

DRIVER = r"""
const { chromium } = require("playwright-core");
const [url, token, executablePath] = process.argv.slice(2);
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
  await page.waitForFunction(() => /\d/.test(document.querySelector("#st-parts").textContent));

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
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log("PART " + part);
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    with tempfile.TemporaryDirectory(prefix="vigil-review-browser-") as tmp:
        sim_dir = os.path.join(tmp, "sim")
        subprocess.run([sim_bin, "generate", "--out", sim_dir, "--parts", str(parts),
                        "--seed", "99", "--split", "browser"], check=True,
                       stdout=subprocess.DEVNULL)
        plc_port = free_port()
        db = os.path.join(tmp, "vigil.db")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(f"""[camera.top]
pipeline = multifilesrc location={sim_dir}/images/part-%05d.png index=0 caps=image/png ! pngdec ! videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = 5000

[vibration.drive_end]
pipeline = filesrc location={sim_dir}/vibration.wav ! wavparse ! audioconvert ! audioresample ! appsink name=sink
mode = sequence
rate_hz = 12000
window = 2048
stride = 2048
timeout_ms = 5000
shaft_hz = 29.95
bearing_balls = 9
ball_diameter_mm = 7.94
pitch_diameter_mm = 39.04

[model]
package = {root}/models/synthetic-v1
backend = opencv

[plc]
host = 127.0.0.1
port = {plc_port}
poll_ms = 2
reject_deadline_ms = 2000

[database]
path = {db}

[review]
port = 0
token = {TOKEN}
""")
        sim = subprocess.Popen([sim_bin, "run", "--parts-dir", sim_dir, "--port", str(plc_port),
                                "--rate", "1200", "--results", os.path.join(tmp, "results.csv"),
                                "--summary", os.path.join(tmp, "summary.json"), "--db", db,
                                "--ready-timeout-s", "60"], stdout=subprocess.DEVNULL)
        log_path = os.path.join(tmp, "vigild.log")
        log = open(log_path, "w")
        vigild = subprocess.Popen([vigild_bin, "--config", conf], stdout=log,
                                  stderr=subprocess.STDOUT)
        ok = False
        try:
            if sim.wait(timeout=240) != 0:
                raise SystemExit("FAIL: vigil-sim failed")
            with open(log_path) as f:
                m = re.search(r"review: serving (http://127\.0\.0\.1:\d+/)", f.read())
            if not m:
                raise SystemExit("FAIL: vigild did not log the review server's address")
            driver = os.path.join(tmp, "driver.cjs")
            with open(driver, "w") as f:
                f.write(DRIVER)
            env = dict(os.environ, NODE_PATH=node_modules, HOME=tmp)
            r = subprocess.run(["node", driver, m.group(1), TOKEN, chromium], env=env,
                               capture_output=True, text=True, timeout=120)
            print(r.stdout[-2000:], r.stderr[-2000:])
            if r.returncode != 0:
                raise SystemExit("FAIL: the browser run failed")
            part = int(re.search(r"PART (\d+)", r.stdout).group(1))
            con = sqlite3.connect(db)
            rows = con.execute("SELECT i.part_id, r.decision, r.verdict, r.note, r.reviewer"
                               " FROM reviews r JOIN inspections i ON i.id = r.inspection_id"
                               ).fetchall()
            con.close()
            if rows != [(part, "overrule", "accept", "browser: <b>not</b> a defect",
                         "playwright")]:
                raise SystemExit(f"FAIL: reviews in the database: {rows}")
            ok = True
        finally:
            vigild.send_signal(signal.SIGTERM)
            vigild.wait(timeout=60)
            if sim.poll() is None:
                sim.kill()
            log.close()
            if not ok:
                with open(log_path) as f:
                    print(f.read()[-2000:])
    print(f"PASS: the review page in chromium: list, detail, 401 without the token, "
          f"overrule of part {part} stored")


main()
