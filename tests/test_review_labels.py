#!/usr/bin/python3
"""Labels worth training on, through the review API of a real vigild over a
real line (vigil-sim): GET /api/classes offers the package's [classes]
and the plant's [review] defect_types; a review with a defect type and a
painted mask (a PNG data URL) is stored, the mask as a 0/255 PNG of the
image's size in the media folder; bad masks and unknown types are refused
with 400 and a message that says what is wrong, and nothing is kept then;
`vigilctl export` writes the mask in the manifest's mask column and the
type in image_class; vigil-features --masks-out (what tools/train.py runs)
reads the mask back where it was painted. A bad defect_types stops vigild
with FILE:LINE: [review] defect_types.

usage: test_review_labels.py BUILD_DIR SOURCE_ROOT
"""
import base64
import csv
import http.client
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys

import cv2
import numpy as np

from linetest import Checks, Line, Vigild, add_part_media, workdir

build, root = sys.argv[1], sys.argv[2]
TOKEN = "labels-test-token-0123"
checks = Checks()
fail, check = checks.fail, checks.check


class Server:
    """The review server's API (as tests/test_review.py talks to it)."""

    def __init__(self, port):
        self.port = port

    def request(self, method, target, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, target, body, headers or {})
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def get_json(self, target):
        status, _, body = self.request("GET", target)
        check(status == 200, f"GET {target}: {status} {body[:200]!r}")
        return json.loads(body) if status == 200 else {}

    def review(self, part, payload):
        return self.request("POST", f"/api/parts/{part}/review", json.dumps(payload).encode(),
                            {"Content-Type": "application/json",
                             "Authorization": "Bearer " + TOKEN})


def data_url(img, ext=".png"):
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def review_rows(db):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT decision, verdict, defect_type, mask_path FROM reviews"
                       " ORDER BY id").fetchall()
    con.close()
    return rows


def media_dir_of(db):
    con = sqlite3.connect(db)
    (d,) = con.execute("SELECT value FROM meta WHERE key = 'media_dir'").fetchone()
    con.close()
    return d


def mask_files(media):
    d = os.path.join(media, "masks")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def check_classes(srv):
    c = srv.get_json("/api/classes")
    check(c.get("surface") == ["blowhole", "crack"] and c.get("vibration") == ["inner_race"]
          and c.get("plant") == ["porosity", "burr", "crack"],
          f"/api/classes: {c}")


def check_refused(srv, db, media, part, h, w):
    """Each bad label: 400 with a message naming what is wrong; no review
    row and no mask file kept."""
    before_rows, before_files = review_rows(db), mask_files(media)
    good = np.zeros((h, w), np.uint8)
    good[2:6, 2:6] = 255
    ok, jpeg = cv2.imencode(".jpg", good)
    png = cv2.imencode(".png", good)[1].tobytes()
    cases = [
        ({"mask": data_url(np.zeros((h, w + 1), np.uint8))},
         f"is {w + 1}x{h}, but the image of part {part} is {w}x{h}"),
        ({"mask": "data:image/png;base64," + base64.b64encode(jpeg.tobytes()).decode()},
         "not a PNG file"),
        ({"mask": "data:image/png;base64," + base64.b64encode(png[:len(png) // 2]).decode()},
         "does not decode"),
        # A header claiming a huge image is refused before any decoding.
        ({"mask": "data:image/png;base64," + base64.b64encode(
            png[:16] + struct.pack(">II", 100000, 100000) + png[24:]).decode()},
         f"is 100000x100000, but the image of part {part} is {w}x{h}"),
        ({"mask": "data:image/jpeg;base64,AAAA"}, "mask is a PNG data URL"),
        ({"mask": "data:image/png;base64,#!?"}, "not base64"),
        ({"mask": 42}, "mask is a PNG data URL string or null"),
        ({"mask": "data:image/png;base64," + "A" * (1024 * 1024)}, "over 1048576 bytes"),
        ({"defect_type": "scratch"}, "defect_type 'scratch' is not one of GET /api/classes"),
        ({"defect_type": 7}, "defect_type is a string"),
    ]
    for extra, want in cases:
        payload = dict({"decision": "overrule", "verdict": "reject", "defect_type": "crack"},
                       **extra)
        status, _, body = srv.review(part, payload)
        msg = body.decode(errors="replace")
        check(status == 400 and want in msg,
              f"bad label {str(extra)[:60]}: status {status}, {msg[:200]!r}, want 400 {want!r}")
    check(review_rows(db) == before_rows, f"a refused review was stored: {review_rows(db)}")
    check(mask_files(media) == before_files, f"a refused mask was kept: {mask_files(media)}")


def vgm_masks(path):
    with open(path, "rb") as f:
        magic, n, px = f.read(4), *struct.unpack("<II", f.read(8))
        check(magic == b"VGM1", f"{path}: magic {magic!r}")
        return np.frombuffer(f.read(), "<f4").reshape(n, px)


def main():
    with workdir("vigil-review-labels-") as tmp:
        pkg = os.path.join(tmp, "pkg")
        shutil.copytree(os.path.join(root, "models", "synthetic-v2"), pkg)
        with open(os.path.join(pkg, "manifest.ini"), "a") as f:
            f.write("\n[classes]\nsurface = blowhole, crack\nvibration = inner_race\n")
        conf = (f"\n[review]\nport = 0\ntoken = {TOKEN}\n"
                f"defect_types = porosity, burr, crack\n")
        line = Line(build, root, tmp, 16, seed=5, split="labels", extra_conf=conf,
                    # No recent ring: the test needs accepted parts that
                    # keep no image (a mask for them is refused).
                    conf_kw={"package": pkg, "tail": "recent_images_mb = 0\n"}).start()
        try:
            check(line.wait_sim() == 0, "vigil-sim failed")
            srv = Server(line.vigild.review_port())
            check_classes(srv)
            con = sqlite3.connect(line.db)
            parts = [r[0] for r in con.execute("SELECT part_id FROM inspections ORDER BY id")]
            con.close()
            part, bare, blank = parts[-1], parts[-2], parts[-3]
            files = add_part_media(line.db, line.sim_dir, part, 100.0)
            add_part_media(line.db, line.sim_dir, blank, 100.0)
            image = cv2.imread(files["image"][1], cv2.IMREAD_GRAYSCALE)
            h, w = image.shape
            media = media_dir_of(line.db)

            # A box and a stroke; soft edges (a canvas smooths them) are
            # kept as 0/255 at half way.
            mask = np.zeros((h, w), np.uint8)
            box = (h // 4, h // 2, w // 3, w // 2)
            mask[box[0]:box[1], box[2]:box[3]] = 255
            mask[box[1], box[2]:box[3]] = 200     # -> 255
            mask[box[0] - 1, box[2]:box[3]] = 60  # -> 0
            cv2.line(mask, (2, h - 3), (w - 3, h - 3), 255, 2)
            want = np.where(mask >= 128, 255, 0).astype(np.uint8)

            check_refused(srv, line.db, media, part, h, w)
            status, _, body = srv.review(bare, {"decision": "confirm",
                                                "mask": data_url(np.zeros((h, w), np.uint8))})
            check(status == 404 and b"has no image kept" in body,
                  f"a mask for a part without an image: {status} {body[:200]!r}")

            status, _, body = srv.review(part, {"decision": "overrule", "verdict": "reject",
                                                "defect_type": "crack", "mask": data_url(mask),
                                                "note": "crack along the edge"})
            check(status == 200, f"labelled review: {status} {body[:300]!r}")
            reply = json.loads(body) if status == 200 else {}
            rows = review_rows(line.db)
            check(len(rows) == 1 and rows[0][:3] == ("overrule", "reject", "crack")
                  and rows[0][3] == reply.get("mask") and rows[0][3].startswith("masks/"),
                  f"stored review {rows}, reply {reply}")
            stored = cv2.imread(os.path.join(media, rows[0][3]), cv2.IMREAD_UNCHANGED)
            check(stored is not None and stored.shape == (h, w) and stored.dtype == np.uint8
                  and np.array_equal(stored, want),
                  f"the stored mask differs from the painted one: "
                  f"{None if stored is None else (stored.shape, int((stored != want).sum()))}")
            status, hdrs, png = srv.request("GET", f"/api/parts/{part}/mask")
            with open(os.path.join(media, rows[0][3]), "rb") as f:
                check(status == 200 and hdrs.get("Content-Type") == "image/png"
                      and png == f.read(), f"GET /api/parts/{part}/mask: {status}")
            detail = srv.get_json(f"/api/parts/{part}")["inspection"]
            check(detail.get("review_defect_type") == "crack" and detail.get("review_mask") is True,
                  f"the part's detail: {detail}")

            # A plant type and an empty mask: the type is kept, no file.
            status, _, body = srv.review(blank, {"decision": "confirm", "defect_type": "burr",
                                                 "mask": data_url(np.zeros((h, w), np.uint8))})
            check(status == 200 and json.loads(body).get("mask") is None,
                  f"an empty mask: {status} {body[:200]!r}")
            check(review_rows(line.db)[-1][2:] == ("burr", None), f"{review_rows(line.db)}")
            check(len(mask_files(media)) == 1, f"mask files {mask_files(media)}")
            status, _, body = srv.request("GET", f"/api/parts/{blank}/mask")
            check(status == 404 and b"has no mask" in body, f"mask of {blank}: {status} {body!r}")
        finally:
            rc = line.stop()
        check(rc == 0, f"vigild exited with {rc}")

        # Export: the mask column and the type; the file is where it says.
        manifest = os.path.join(tmp, "export.csv")
        p = subprocess.run([os.path.join(build, "tools", "vigilctl"), "--db", line.db, "export",
                            "--out", manifest], capture_output=True, text=True)
        check(p.returncode == 0, f"export: {p.stderr}")
        with open(manifest) as f:
            got = {int(r["part_id"].split("-")[1]): r for r in csv.DictReader(f)}
        r = got.get(part, {})
        check(r.get("mask") == rows[0][3] and r.get("image_class") == "crack"
              and r.get("defect") == "1", f"exported row {r}")
        check(os.path.isfile(os.path.join(media, r.get("mask", "-"))), f"{r.get('mask')} is missing")
        check(got.get(blank, {}).get("mask") == "", f"exported row {got.get(blank)}")

        # What training reads: vigil-features --masks-out, at the image's
        # own size so that each model pixel is one image pixel.
        feats = os.path.join(tmp, "export.vgf")
        vib_len = int(r.get("vib_len", "2048"))
        p = subprocess.run([os.path.join(build, "tools", "vigil-features"), "--manifest", manifest,
                            "--data-root", media, "--width", str(w), "--height", str(h),
                            "--window", str(vib_len), "--rate", "12000", "--out", feats,
                            "--masks-out", feats + ".masks"], capture_output=True, text=True)
        check(p.returncode == 0, f"vigil-features: {p.stderr[-500:]}")
        if p.returncode == 0:
            order = list(got)
            m = vgm_masks(feats + ".masks")[order.index(part)].reshape(h, w)
            check(np.array_equal(m > 0.5, want > 0) and m.max() == 1.0,
                  f"vigil-features read the mask back with {int(((m > 0.5) != (want > 0)).sum())} "
                  f"pixels wrong")
            check(not vgm_masks(feats + ".masks")[order.index(blank)].any(),
                  "a part without a mask reads as masked")

        # A defect type that is no word stops vigild, naming file, line, key.
        bad = os.path.join(tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write(f"[database]\npath = {line.db}\n\n[review]\nport = 0\n"
                    f"defect_types = crack, bad type!\n")
        r2 = Vigild.once(build, bad, ["--review-only"], timeout=30)
        out = r2.stdout + r2.stderr
        check(r2.returncode != 0 and f"{bad}:6: [review] defect_types: 'bad type!'" in out,
              f"bad defect_types: rc {r2.returncode}, {out.strip()[-300:]!r}")
        checks.finish()
    print(f"PASS: labels: /api/classes, a typed review with a {w}x{h} mask stored, bad labels "
          f"refused, exported and read back by vigil-features")


main()
