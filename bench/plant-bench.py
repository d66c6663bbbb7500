#!/usr/bin/python3
"""bench/plant-bench.py BUILD [ROWS] [BATCH]: the figures behind
docs/plant.md's sizing. Starts a throw-away PostgreSQL (tests/pgtest.py,
with fsync on, as a real server runs) and times the real forwarder
(vigil-plant-bench: db/plant.h on a local log of ROWS parts), then prints
what a part costs in the central database (heap and indexes, WAL)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import pgtest  # noqa: E402


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    rows = sys.argv[2] if len(sys.argv) > 2 else "100000"
    batch = sys.argv[3] if len(sys.argv) > 3 else "500"
    pg = pgtest.Postgres("vigil-plant-bench-")
    try:
        # pgtest turns fsync off for tests; a plant's server keeps it on.
        with open(os.path.join(pg.data, "postgresql.conf"), "a") as f:
            f.write("fsync = on\nsynchronous_commit = on\n")
        pg.start()
        conninfo = pg.create_role("bench", "bench-password", "plant")
        ver = pg.query("postgres", "SHOW server_version")[0][0]
        print(f"PostgreSQL {ver}, {os.cpu_count()} CPUs, one station forwarding")
        sys.stdout.flush()
        rc = subprocess.call([os.path.join(build, "bench", "vigil-plant-bench"),
                              conninfo, rows, batch])
    finally:
        pg.close()
    sys.exit(rc)


if __name__ == "__main__":
    main()
