#!/usr/bin/python3
"""The shift report in headless Debian chromium, driven by playwright-core
(npm): from the review page's "Shift report" form (a date and a shift
name) to /report?shift=... in a new tab; the report's own style sheet
passes the page's Content-Security-Policy, its images load, it has no
horizontal overflow at A4 width (screen and print), and printing it to
PDF (what "Save as PDF" does) gives a PDF of the pages its print CSS
asks for (the summary, the top defects, the events, each from a new page).
Where reads need a token ([review] read_requires_token), the signed-in
form saves the report with its images embedded instead of opening a tab
that could not carry the token.

The log is tests/test-report.c's (--make-log), read by vigild
--review-only in Europe/Berlin.

Skips (exit 77) when /usr/bin/chromium or npm is missing; fails when npm
is there but playwright-core was not installed (`make web-test-deps`).

usage: test_review_report_browser.py BUILD_DIR
"""
import os
import re
import shutil
import subprocess
import sys

from linetest import Vigild, browser_tools, fail, run_node_driver, workdir

build = sys.argv[1]
make_log = os.path.join(build, "tests", "test-report")

chromium, node_modules = browser_tools(build)

DRIVER = r"""
const { chromium } = require("playwright-core");
const fs = require("fs");
const [url, executablePath, pdfPath, token] = process.argv.slice(2);
(async () => {
  if (token) return downloadWithToken();
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  const watch = (p) => {
    p.on("pageerror", (e) => errors.push(String(e)));
    // A style or image the policy blocks is a console error; a failed
    // load is named by its response (the browser's own favicon try aside).
    p.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
        errors.push(m.text());
    });
    p.on("response", (r) => {
      if (r.status() >= 400 && !r.url().endsWith("/favicon.ico"))
        errors.push(r.status() + " " + r.url());
    });
  };
  watch(page);
  await page.goto(url);
  await page.waitForSelector("#shift-report");
  // A date without the shift's name is refused on the page, no tab opens.
  await page.selectOption("#sr-which", "date");
  await page.fill("#sr-date", "2026-12-01");
  await page.click("#shift-report button[type=submit]");
  await page.waitForSelector("#sr-error:not([hidden])");
  if (context.pages().length !== 1) throw new Error("a tab opened without a shift name");
  await page.fill("#sr-name", "early");
  const [report] = await Promise.all([context.waitForEvent("page"),
                                      page.click("#shift-report button[type=submit]")]);
  watch(report);
  await report.waitForLoadState("load");
  if (!report.url().endsWith("/report?shift=2026-12-01+early"))
    throw new Error("the form opened " + report.url());
  const h1 = await report.textContent("h1");
  if (h1 !== "Shift report: 2026-12-01 early") throw new Error("heading " + h1);
  // The inline style sheet applied (allowed by its hash), images loaded.
  const border = await report.$eval("h2", (h) => getComputedStyle(h).borderBottomStyle);
  if (border !== "solid") throw new Error("the report's style sheet was not applied");
  await report.waitForFunction(() => Array.from(document.images).every((i) => i.complete));
  const loaded = await report.$$eval("img", (imgs) => imgs.map((i) => i.naturalWidth));
  if (loaded.length !== 5 || loaded.some((w) => w !== 32))
    throw new Error("images: " + loaded.join(","));
  // A4 is 210 mm, 794 CSS px: nothing wider, on screen or in print.
  const overflow = () => report.evaluate(() =>
    document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await report.setViewportSize({ width: 794, height: 1123 });
  const screenOver = await overflow();
  await report.emulateMedia({ media: "print" });
  const printOver = await overflow();
  if (screenOver > 0 || printOver > 0)
    throw new Error("horizontal overflow at A4 width: screen " + screenOver + " px, print " +
                    printOver + " px");
  if (process.env.VIGIL_SCREENSHOT)  // to look at it: VIGIL_SCREENSHOT=report.png
    await report.screenshot({ path: process.env.VIGIL_SCREENSHOT, fullPage: true });
  // Still under print emulation: "screen" would print the screen layout.
  const pdf = await report.pdf({ preferCSSPageSize: true, printBackground: true });
  fs.writeFileSync(pdfPath, pdf);
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  await browser.close();
})().catch((e) => { console.error("FAIL: " + e.message); process.exit(1); });

// With read_requires_token a new tab could not carry the token: signed in,
// the form saves the report (images embedded) as a file instead.
async function downloadWithToken() {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run"] });
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  await page.goto(url);
  await page.fill("#users-token", token);
  await page.click("#users-signin button[type=submit]");
  // Signed in once the server answered (before that the line says "not signed in").
  await page.waitForFunction(() => /signed in as/.test(document.querySelector("#users-who").textContent));
  await page.selectOption("#sr-which", "date");
  await page.fill("#sr-date", "2026-12-01");
  await page.fill("#sr-name", "early");
  const [download] = await Promise.all([page.waitForEvent("download"),
                                        page.click("#shift-report button[type=submit]")]);
  if (context.pages().length !== 1) throw new Error("a tab opened, which would lack the token");
  const name = download.suggestedFilename();
  const text = fs.readFileSync(await download.path(), "utf8");
  if (name !== "shift-report-2026-12-01-early.html" ||
      !text.includes("<h1>Shift report: 2026-12-01 early</h1>") ||
      (text.match(/src="data:image\/png;base64,/g) || []).length !== 5)
    throw new Error("the saved report " + name + ": " + text.slice(0, 200));
  console.log("SAVED " + name);
  // The current shift's file is named after the shift, not "current".
  await page.selectOption("#sr-which", "current");
  const [current] = await Promise.all([page.waitForEvent("download"),
                                       page.click("#shift-report button[type=submit]")]);
  const shown = /<h1>Shift report: (\d{4}-\d\d-\d\d) (\w+)<\/h1>/.exec(
    fs.readFileSync(await current.path(), "utf8"));
  if (!shown || current.suggestedFilename() !== "shift-report-" + shown[1] + "-" + shown[2] + ".html")
    throw new Error("the current shift's report saved as " + current.suggestedFilename());
  console.log("SAVED " + current.suggestedFilename());
  await browser.close();
}
"""


TOKEN = "report-browser-token-4242"


def run_driver(tmp, url, pdf_path, token=""):
    r = run_node_driver(tmp, DRIVER, node_modules, [url, chromium, pdf_path, token], 120)
    print(r.stdout[-2000:], r.stderr[-2000:])
    if r.returncode != 0:
        fail("the browser run failed" + (" (with a token)" if token else ""))


def main():
    with workdir("vigil-report-browser-") as tmp:
        db = os.path.join(tmp, "log.db")
        r = subprocess.run([make_log, "--make-log", db], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            fail(f"test-report --make-log: {r.stdout}{r.stderr}")
        conf = os.path.join(tmp, "vigild.conf")
        with open(conf, "w") as f:
            f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n")
        vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), ["--review-only"],
                        env={"TZ": "Europe/Berlin"})
        try:
            url = vigild.review_url()
            pdf_path = os.path.join(tmp, "report.pdf")
            run_driver(tmp, url, pdf_path)
            with open(pdf_path, "rb") as f:
                pdf = f.read()
            if os.environ.get("VIGIL_REPORT_PDF"):  # to look at it
                shutil.copy(pdf_path, os.environ["VIGIL_REPORT_PDF"])
        finally:
            rc = vigild.stop(timeout=30)
        if rc != 0:
            fail(f"vigild --review-only exited with {rc}")
        pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))
        size = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
        if not pdf.startswith(b"%PDF-") or not size:
            fail(f"not a PDF with pages ({len(pdf)} bytes)")
        w, h = float(size.group(1)), float(size.group(2))
        # A4 in points: 595 x 842.
        if abs(w - 595.3) > 2 or abs(h - 841.9) > 2:
            fail(f"the PDF's page is {w} x {h} pt, not A4")
        if pages < 3:
            fail(f"the PDF has {pages} pages: the top defects and the events each "
                 "begin a new page")

        # Reads that need a token: signed in, the form saves the report.
        with open(conf, "a") as f:
            f.write(f"token = {TOKEN}\nread_requires_token = true\n")
        vigild = Vigild(build, conf, os.path.join(tmp, "vigild-token.log"), ["--review-only"],
                        env={"TZ": "Europe/Berlin"})
        try:
            run_driver(tmp, vigild.review_url(), pdf_path, TOKEN)
        finally:
            rc = vigild.stop(timeout=30)
        if rc != 0:
            fail(f"vigild --review-only with a token exited with {rc}")
    print(f"PASS: the shift report opened from the page, no overflow at A4 width, "
          f"printed to a {pages}-page A4 PDF of {len(pdf)} bytes; saved signed in where "
          f"reads need a token")


main()
