#!/usr/bin/python3
"""The recent ring ([database] recent_images_mb) with vigild whole: vigil-sim
as the PLC (Modbus TCP loopback), one camera, the long-term sample off
(keep_accepted_every = 0) so that accepted parts have only the ring.

  window   a ring big enough for the run: every part of it has its image
           afterwards, accepted parts in media/recent/ (marked recent by
           the API, which serves the file), rejects long-term; /metrics
           counts the ring as the rows do; vigilctl export of a reviewed
           accepted part names its ring image, which exists.
  small    a 1 MB ring over a run that writes more: the ring's rows and
           files stay within 1 MB, the oldest accepted parts' files are
           gone and the newest kept, every reject keeps its files, and
           /metrics counts the removed files.
  disk-full the log and its media on a 16 MB tmpfs with a 64 MB ring: the
           ring gives way (keeps the file system's last 5 % free, and
           halves itself when a write fails anyway): every part still gets
           its result and its row, the database ends without a fault, and
           the ring ends smaller than the disk. Needs root to mount the
           tmpfs (as tests/test_faults_disk.py); skips otherwise.

The media queue is made larger than the run (media_queue), so that the ring
never has to skip a part however busy the machine is: what is asserted does
not depend on speed.

usage: test_db_ring.py BUILD_DIR SOURCE_ROOT window|small|disk-full
"""
import csv
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request

from linetest import Line, fail, skip, wait_for, workdir

TOKEN = "ring-test-token"


def conf(ring_mb, media_queue=1024):
    # Appended to [database] (line_config ends with it), then [review].
    return f"""keep_accepted_every = 0
media_queue = {media_queue}
recent_images_mb = {ring_mb}

[review]
listen = 127.0.0.1
port = 0
token = {TOKEN}
"""


def get(url, raw=False):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return body if raw else json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def metrics(url):
    out = {}
    for line in get(url + "/metrics").splitlines():
        if line.startswith("vigil_db_recent_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def query(db, sql):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def without_media(db):
    """Inspections with no image row yet (the media thread writes files
    after the rows)."""
    try:
        return query(db, "SELECT count(*) FROM inspections i WHERE NOT EXISTS (SELECT 1 FROM"
                     " media m WHERE m.inspection_id = i.id AND m.kind = 'image')")[0][0]
    except sqlite3.Error:
        return -1


def run(build, root, tmp, parts, ring_mb):
    line = Line(build, root, tmp, parts, 91, "e2e", extra_conf=conf(ring_mb), rate=600)
    line.start()
    url = line.review_url().rstrip("/")
    if line.wait_sim() != 0:
        fail("vigil-sim: results lost or mislogged\n" + line.log_tail())
    return line, url


def ring_rows(db):
    return query(db, "SELECT m.inspection_id, m.path, m.bytes, i.verdict FROM media m JOIN"
                 " inspections i ON i.id = m.inspection_id WHERE m.recent = 1")


def window(build, root, tmp):
    parts = 40
    line, url = run(build, root, tmp, parts, 64)
    db = line.db
    try:
        wait_for("every part's image", lambda: without_media(line.db) == 0, poll_s=0.1)
        rows = query(db, "SELECT i.id, i.part_id, i.verdict, m.recent, m.path FROM inspections"
                     " i JOIN media m ON m.inspection_id = i.id AND m.kind = 'image'")
        if len({r[0] for r in rows}) != parts:
            fail(f"{len(rows)} parts with an image, want {parts}")
        media = os.path.join(tmp, "vigil.db.media")
        for iid, part, verdict, recent, path in rows:
            if recent != (verdict == "accept"):
                fail(f"part {part} ({verdict}): recent {recent}, path {path}")
            if recent != path.startswith("recent/"):
                fail(f"part {part}: ring file outside media/recent/: {path}")
            if not os.path.isfile(os.path.join(media, path)):
                fail(f"part {part}: {path} missing")
        accepted = [r for r in rows if r[2] == "accept"]
        rejected = [r for r in rows if r[2] != "accept"]
        if not accepted or not rejected:
            fail(f"the run lacks accepted or rejected parts: {rows}")
        # The API marks ring files and serves them.
        for _, part, verdict, recent, _ in (accepted[-1], rejected[-1]):
            d = get(f"{url}/api/parts/{part}")
            imgs = [m for m in d["media"] if m["kind"] == "image"]
            if not imgs or imgs[0]["recent"] is not bool(recent):
                fail(f"/api/parts/{part}: media {d['media']}, want recent {bool(recent)}")
            png = get(url + imgs[0]["url"], raw=True)
            if png[:8] != b"\x89PNG\r\n\x1a\n":
                fail(f"{imgs[0]['url']}: not a PNG")
        # /metrics counts what the rows hold.
        ring = ring_rows(db)
        m = metrics(url)
        print("metrics:", m)
        want = {"vigil_db_recent_files": len(ring),
                "vigil_db_recent_bytes": sum(r[2] for r in ring),
                "vigil_db_recent_dropped_total": 0, "vigil_db_recent_removed_total": 0}
        for k, v in want.items():
            if m.get(k) != v:
                fail(f"/metrics {k} = {m.get(k)}, want {v}")
        if not m.get("vigil_db_recent_oldest_age_seconds", 0) > 0:
            fail(f"/metrics oldest age {m.get('vigil_db_recent_oldest_age_seconds')}")
    finally:
        rc = line.stop()
    if rc != 0:
        fail(f"vigild exited with {rc}")
    # QA confirms an accepted part seen only in the ring: export names its
    # ring image.
    ctl = os.path.join(build, "tools", "vigilctl")
    part = accepted[0][1]
    subprocess.run([ctl, "--db", db, "review", "--part", str(part), "--confirm"], check=True)
    manifest = os.path.join(tmp, "reviewed.csv")
    p = subprocess.run([ctl, "--db", db, "export", "--out", manifest], capture_output=True,
                       text=True)
    if p.returncode != 0:
        fail(f"export: {p.stderr}")
    media_dir = p.stderr.rsplit("data root ", 1)[1].split(" ")[0]
    with open(manifest) as f:
        got = list(csv.DictReader(f))
    if len(got) != 1 or not got[0]["image"].startswith("recent/") or \
            not os.path.isfile(os.path.join(media_dir, got[0]["image"])):
        fail(f"export of ring part {part}: {got} ({p.stderr.strip()})")
    print(f"window: {parts} parts, {len(accepted)} accepted in the ring, export {got[0]['image']}")


def small(build, root, tmp):
    parts, bound = 90, 1024 * 1024
    line, url = run(build, root, tmp, parts, 1)
    db = line.db
    try:
        # Every part's files dealt with: the last part's are written (the
        # media thread goes in order) and the ring has been trimmed.
        last = query(db, "SELECT max(id) FROM inspections")[0][0]

        def settled():
            m = metrics(url)
            done = query(db, f"SELECT count(*) FROM media WHERE inspection_id = {last}")[0][0]
            return done > 0 and m.get("vigil_db_recent_bytes", bound + 1) <= bound

        wait_for("the last part's files and the ring within its bound", settled, poll_s=0.1)
        m = metrics(url)
        print("metrics:", m)
        ring = ring_rows(db)
        total = sum(r[2] for r in ring)
        if total > bound or m["vigil_db_recent_bytes"] != total or \
                m["vigil_db_recent_files"] != len(ring):
            fail(f"ring {total} bytes in {len(ring)} rows, /metrics {m}, bound {bound}")
        if not m.get("vigil_db_recent_removed_total", 0) > 0:
            fail(f"nothing removed from a 1 MB ring after {parts} parts: {m}")
        if m.get("vigil_db_recent_dropped_total") != 0:
            fail(f"ring parts skipped: {m}")
    finally:
        rc = line.stop()
    if rc != 0:
        fail(f"vigild exited with {rc}")
    # The newest accepted parts are in the ring, the oldest are gone, and
    # every reject keeps its files (long-term, never the ring's to remove).
    rows = query(db, "SELECT i.id, i.verdict, (SELECT count(*) FROM media m WHERE"
                 " m.inspection_id = i.id) FROM inspections i ORDER BY i.id")
    acc = [r for r in rows if r[1] == "accept"]
    kept = [r[0] for r in acc if r[2] > 0]
    gone = [r[0] for r in acc if r[2] == 0]
    if not kept or not gone or max(gone) > min(kept):
        fail(f"ring kept {kept}, removed {gone}: not the newest kept")
    if acc[-1][2] == 0:
        fail("the newest accepted part has no files")
    lost = [r[0] for r in rows if r[1] != "accept" and r[2] == 0]
    if lost:
        fail(f"rejects without files: {lost}")
    on_disk = 0
    ring_dir = os.path.join(tmp, "vigil.db.media", "recent")
    for d, _, files in os.walk(ring_dir):
        on_disk += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    if on_disk > bound:
        fail(f"{on_disk} bytes under {ring_dir}, bound {bound}")
    print(f"small: {len(kept)} accepted parts kept, {len(gone)} removed, "
          f"{on_disk} bytes in the ring")


def disk_full(build, root, tmp):
    if os.geteuid() != 0:
        skip("mounting a tmpfs needs root (CI runs this as root)")
    fs = os.path.join(tmp, "fs")
    os.mkdir(fs)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", fs],
                       capture_output=True, text=True)
    if p.returncode != 0:
        skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
    try:
        disk_full_on(build, root, tmp, fs)
    finally:
        subprocess.run(["umount", "-l", fs], check=False)


def disk_full_on(build, root, tmp, fs):
    # Some 25 KB of files a part, nearly half the parts rejects, and a WAL
    # that grows to 4 MB: the log and the long-term files (some 11 MB) fit
    # on the disk, with the ring's (8 MB more) they do not.
    parts, size = 600, 16 * 1024 * 1024
    # The default media queue: the ring's share of it is what may be in
    # flight when the disk runs short.
    line = Line(build, root, tmp, parts, 91, "e2e", extra_conf=conf(64, 64), rate=1200)
    db = os.path.join(fs, "vigil.db")
    with open(line.conf) as f:
        text = f.read()
    with open(line.conf, "w") as f:
        f.write(text.replace(f"path = {line.db}\n", f"path = {db}\n", 1))
    line.db = db
    line.start()
    url = line.review_url().rstrip("/")
    try:
        if line.wait_sim() != 0:
            du = subprocess.run(["du", "-a", fs], capture_output=True, text=True).stdout
            fail("vigil-sim: results lost or rows missing on a disk the ring filled\n"
                 + "\n".join(l for l in du.splitlines() if l.count("/") <= fs.count("/") + 3)
                 + f"\nmetrics: {all_metrics(url)}")
        m = wait_for("the database without a fault", lambda: (
            lambda m: m if m.get("vigil_db_ok") == 1 else None)(all_metrics(url)), 60, 0.2)
        print("metrics:", {k: v for k, v in m.items() if k.startswith("vigil_db_")})
        if not m["vigil_db_recent_removed_total"] > 0:
            fail(f"the ring gave nothing back on a 16 MB disk: {m}")
        if not m["vigil_db_recent_bytes"] < size:
            fail(f"the ring holds {m['vigil_db_recent_bytes']} bytes on a {size}-byte disk")
    finally:
        rc = line.stop()
    if rc != 0:
        fail(f"vigild exited with {rc}")
    rows = query(db, "SELECT count(*), sum(verdict != 'accept') FROM inspections")[0]
    kept = query(db, "SELECT count(DISTINCT m.inspection_id) FROM media m JOIN inspections i"
                 " ON i.id = m.inspection_id WHERE i.verdict != 'accept'")[0][0]
    if rows[0] != parts:
        fail(f"{rows[0]} rows, want {parts}")
    sv = os.statvfs(fs)
    print(f"disk-full: {parts} rows; {kept} of {rows[1]} rejects kept their files; "
          f"{sv.f_bavail * sv.f_frsize} bytes free of {size} at the end")


def all_metrics(url):
    out = {}
    for line in get(url + "/metrics").splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def main():
    build, root, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    with workdir("vigil-ring-") as tmp:
        {"window": window, "small": small, "disk-full": disk_full}[scenario](build, root, tmp)
    print(f"ok: {scenario}")


if __name__ == "__main__":
    main()
