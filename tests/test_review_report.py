#!/usr/bin/python3
"""The shift report from both ends: `vigilctl report --shift` and vigild's
GET /report?shift=..., over a log that tests/test-report.c writes with the
db API at chosen times (two shifts of 2026-12-01 in Europe/Berlin, plan
"early 06:00, late 14:00").

The HTML parses; it counts the early shift's own 21 parts; its Pareto is
what `vigilctl pareto` gives over the shift's start and end; log text with
<script> comes out as text; vigilctl embeds the images and vigild links
them, and the two documents differ in nothing else (bar the time each
was made); with [review] read_requires_token the report needs a token
and images=embed gives vigilctl's file; `vigilctl pareto --by shift`
groups by the log's plan; bad shifts are refused by name.

usage: test_review_report.py BUILD_DIR
"""
import base64
import html.parser
import http.client
import json
import os
import re
import subprocess
import sys
import urllib.parse

from linetest import Checks, Vigild, fail, workdir

build = sys.argv[1]
vigilctl = os.path.join(build, "tools", "vigilctl")
make_log = os.path.join(build, "tests", "test-report")
ENV = dict(os.environ, TZ="Europe/Berlin")
EARLY = "2026-12-01 early"
VOID = {"meta", "img", "br", "link", "input", "hr"}
checks = Checks()
check = checks.check


class Report(html.parser.HTMLParser):
    """The report's structure: every element closed in order (else
    .errors), the rows of each section's tables as cell texts, the images'
    sources, and whether any script element came through."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.srcs, self.scripts = [], [], [], 0
        self.section, self.rows, self.row, self.cell = None, {}, None, None
        self.h1 = ""
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"never closed: {self.stack}")

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "section":
            self.section = a.get("id")
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if tag == "tr":
            self.row = []
        if tag in ("td", "th"):
            self.cell = ""
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr":
            self.rows.setdefault(self.section, []).append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.stack and self.stack[-1] == "h1":
            self.h1 += data

    def table(self, section):
        """{first cell: the rest} of a section's rows."""
        return {r[0]: r[1:] for r in self.rows.get(section, []) if r}


def run(*args):
    return subprocess.run([vigilctl, *args], capture_output=True, text=True, env=ENV,
                          timeout=60)


def normalized(text):
    """The document less what differs by design: the image sources and the
    time it was made."""
    text = re.sub(r'src="[^"]*"', 'src=""', text)
    return re.sub(r'<time id="generated">[^<]*</time>', "<time></time>", text)


def check_vigilctl(db, out):
    r = run("--db", db, "report", "--shift", EARLY, "--out", out)
    check(r.returncode == 0, f"vigilctl report: rc {r.returncode}: {r.stderr}")
    with open(out, encoding="utf-8") as f:
        text = f.read()
    rep = Report(text)
    check(not rep.errors, f"the report's HTML is not well formed: {rep.errors[:5]}")
    check(rep.h1 == f"Shift report: {EARLY}", f"heading {rep.h1!r}")
    counts = rep.table("counts")
    want = {"parts": "21", "accepted (yield at the line)": "13", "rejected": "6",
            "marginal": "2", "reviewed": "1", "overruled": "1", "fail-safe rejects": "1",
            "fail-safe: deadline": "1", "good after QA review": "14"}
    for k, v in want.items():
        check(counts.get(k, [None])[0] == v, f"counts {k}: {counts.get(k)}, want {v}")
    # Nothing of the late shift, nor its camera-down event.
    check("camera-down" not in text and "part 101" not in text, "the late shift leaks in")
    # Log text stays text.
    check(rep.scripts == 0 and "<script" not in text, "a <script> from the log came through")
    events = rep.table("events")
    check(events.get("07:00:00") == ["plc-fault", "<script>alert('event')</script>"],
          f"the plc-fault event, as text: {events.get('07:00:00')}")
    # Images embedded, PNG in a data: URI.
    check(len(rep.srcs) == 5, f"{len(rep.srcs)} images, want the 5 rejects with one")
    for src in rep.srcs:
        ok = src.startswith("data:image/png;base64,")
        check(ok and base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n",
              f"an image not embedded as PNG: {src[:60]}")

    # The Pareto is vigilctl pareto's over the shift's start and end.
    r = run("--db", db, "pareto", "--since", "2026-12-01T06:00", "--until", "2026-12-01T14:00",
            "--format", "json")
    check(r.returncode == 0, f"vigilctl pareto: {r.stderr}")
    causes = [[c["class"], str(c["rejects"]), f"{c['share_pct']:.1f} %",
               f"{c['cumulative_pct']:.1f} %"] for c in json.loads(r.stdout)["causes"]]
    pareto = rep.rows.get("pareto", [])[1:]
    check(pareto == causes and len(causes) == 4,
          f"the report's Pareto {pareto} is not vigilctl pareto's {causes}")

    # pareto --by shift groups by the log's plan: late runs to 06:00.
    r = run("--db", db, "pareto", "--by", "shift", "--format", "json")
    buckets = {b["shift"]: b["parts"] for b in json.loads(r.stdout)["buckets"]}
    check(buckets == {EARLY: 21, "2026-12-01 late": 12},
          f"pareto --by shift: {buckets}, want the log's plan (early 21, late 12)")

    # Refusals name what is wrong.
    for args, rc, want in [
        (["report"], 2, "--shift is required"),
        (["report", "--shift", "2026-12-01 lunch"], 2, "no shift named 'lunch'"),
        (["report", "--shift", "yesterday"], 2, "'yesterday' is not a shift"),
        # The doc: "the message lists the plan's shifts", for a bare word too.
        (["report", "--shift", "lunch"], 2, "--shift 'lunch': 'lunch' is not a shift"),
        (["report", "--shift", "lunch"], 2, "(the shifts: early 06:00, late 14:00"),
        (["report", "--shift", "2026-12-01 lunch"], 2, "(the shifts: early 06:00, late 14:00"),
        (["report", "--shift", EARLY, "--verdict", "reject"], 2, "--verdict is for list"),
    ]:
        r = run("--db", db, *args)
        check(r.returncode == rc and want in r.stderr and not r.stdout,
              f"vigilctl {args}: rc {r.returncode}, stderr {r.stderr!r}, want {rc} {want!r}")
    r = run("--db", db + ".missing", "report", "--shift", EARLY)
    check(r.returncode == 1 and db + ".missing" in r.stderr,
          f"a missing log: rc {r.returncode}, {r.stderr!r}")
    return text


def get(port, target, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request("GET", target, headers={"Authorization": "Bearer " + token} if token else {})
        r = c.getresponse()
        return r.status, r.headers, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def check_served(tmp, db, file_text):
    conf = os.path.join(tmp, "vigild.conf")
    with open(conf, "w") as f:
        f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n")
    vigild = Vigild(build, conf, os.path.join(tmp, "vigild.log"), ["--review-only"],
                    env={"TZ": "Europe/Berlin"})
    try:
        port = vigild.review_port()
        status, headers, text = get(port, "/report?shift=" + urllib.parse.quote(EARLY))
        check(status == 200 and headers.get("Content-Type", "").startswith("text/html"),
              f"GET /report: {status} {headers.get('Content-Type')}")
        csp = headers.get("Content-Security-Policy", "")
        check(re.fullmatch(r"default-src 'self'; img-src 'self' data:; style-src 'sha256-[A-Za-z0-9+/=]+'; "
                           r"frame-ancestors 'none'", csp) is not None, f"CSP {csp!r}")
        check(headers.get("Content-Disposition") in
              ("inline; filename=shift-report-2026-12-01-early.html",
               'inline; filename="shift-report-2026-12-01-early.html"'),
              f"GET /report: Content-Disposition {headers.get('Content-Disposition')!r}")
        rep = Report(text)
        check(not rep.errors, f"the served report is not well formed: {rep.errors[:5]}")
        check(normalized(text) == normalized(file_text),
              "the served report differs from vigilctl's beyond image sources and time")
        check(len(rep.srcs) == 5 and all(re.fullmatch(r"/api/parts/\d+/media/\d+", s)
                                         for s in rep.srcs), f"served images: {rep.srcs}")
        for src in rep.srcs[:1]:
            s, h, _ = get(port, src)
            check(s == 200 and h.get("Content-Type") == "image/png", f"GET {src}: {s}")
        for target, want in [("/report?shift=yesterday", "'yesterday' is not a shift"),
                             ("/report?shift=2026-12-01%20lunch", "no shift named 'lunch'")]:
            status, _, body = get(port, target)
            check(status == 400 and want in body, f"GET {target}: {status} {body!r}")
        # Without a shift: the current one (no parts, but a report).
        status, headers, body = get(port, "/report")
        check(status == 200 and "Shift report: " in body and "No parts inspected." in body,
              f"GET /report: {status}")
        # Saved, it is named after the shift it is, not "current".
        label = re.search(r"<h1>Shift report: (\d{4}-\d\d-\d\d) (\w+)</h1>", body)
        check(label is not None and headers.get("Content-Disposition", "").replace('"', "")
              == f"inline; filename=shift-report-{label[1]}-{label[2]}.html",
              f"GET /report: Content-Disposition {headers.get('Content-Disposition')!r}")
        status, _, page = get(port, "/")
        check(status == 200 and 'id="shift-report"' in page and 'action="/report"' in page,
              "the review page has no shift report link")
        status, _, _ = get(port, "/static/report.js")
        check(status == 200, f"GET /static/report.js: {status}")
    finally:
        rc = vigild.stop(timeout=30)
    check(rc == 0, f"vigild --review-only exited with {rc}")


def check_token(tmp, db, file_text):
    """With read_requires_token the report is a read like the others: 401
    without a token; with one, images=embed gives vigilctl's very file."""
    token = "report-test-token-4242"
    conf = os.path.join(tmp, "vigild-token.conf")
    with open(conf, "w") as f:
        f.write(f"[database]\npath = {db}\n\n[review]\nlisten = 127.0.0.1\nport = 0\n"
                f"token = {token}\nread_requires_token = true\n")
    vigild = Vigild(build, conf, os.path.join(tmp, "vigild-token.log"), ["--review-only"],
                    env={"TZ": "Europe/Berlin"})
    target = "/report?shift=" + urllib.parse.quote(EARLY)
    try:
        port = vigild.review_port()
        status, _, body = get(port, target)
        check(status == 401 and "Shift report" not in body,
              f"GET /report without the token: {status}")
        status, _, body = get(port, target, token)
        check(status == 200 and "Shift report: " + EARLY in body,
              f"GET /report with the token: {status}")
        status, headers, body = get(port, target + "&images=embed", token)
        check(status == 200 and normalized(body) == normalized(file_text) and
              re.sub(r"<time[^<]*</time>", "", body) == re.sub(r"<time[^<]*</time>", "",
                                                                file_text),
              f"images=embed: {status}, not vigilctl's file bar the time")
        check("img-src 'self' data:" in headers.get("Content-Security-Policy", ""),
              "images=embed's data: images are not allowed by the CSP")
        status, _, body = get(port, target + "&images=inline", token)
        check(status == 400 and "images is embed or link" in body, f"images=inline: {status}")
    finally:
        rc = vigild.stop(timeout=30)
    check(rc == 0, f"vigild --review-only with a token exited with {rc}")


def main():
    with workdir("vigil-report-") as tmp:
        db = os.path.join(tmp, "log.db")
        r = subprocess.run([make_log, "--make-log", db], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            fail(f"test-report --make-log: {r.stdout}{r.stderr}")
        text = check_vigilctl(db, os.path.join(tmp, "early.html"))
        check_served(tmp, db, text)
        check_token(tmp, db, text)
        checks.finish()
    print("PASS: the shift report from vigilctl and vigild")


main()
