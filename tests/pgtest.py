"""A throw-away PostgreSQL server for tests: initdb into a temporary
folder, pg_ctl on a free loopback port, a role with a password and a
database of its own, stopped and removed at the end even on failure.

PostgreSQL refuses to run as root: when the test runs as root, the server
runs as the `postgres` user (Debian's postgresql package makes it) in a
folder it owns. Local (Unix socket) connections are trusted, for the test
to administer the server with psycopg2; TCP connections on 127.0.0.1 need
the role's password (scram-sha-256), as a station's would.

    with pgtest.server() as pg:
        conninfo = pg.create_role("vigil", "secret", "plant")
        ...
        pg.stop(); pg.start()       # an outage
"""
import atexit
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile

import linetest

_servers = []


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    linetest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are missing: "
                  "install the Debian package postgresql")
    return None


def psycopg2():
    try:
        import psycopg2 as mod
    except ImportError:
        linetest.fail("psycopg2 is missing: install the Debian package python3-psycopg2")
    return mod


class Postgres:
    def __init__(self, prefix="vigil-pg-"):
        self.bindir = _bindir()
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.data = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.port = linetest.free_port()
        self.running = False
        self.as_user = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                linetest.fail("no `postgres` user to run PostgreSQL as (it refuses root): "
                              "install the Debian package postgresql")
            self.as_user = "postgres"
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run(["initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8",
                   "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = '127.0.0.1'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    "fsync = off\n"          # a test's data need not survive a power cut
                    "max_connections = 50\n")
        _servers.append(self)

    def _run(self, argv, check=True):
        argv = [os.path.join(self.bindir, argv[0])] + argv[1:]
        if self.as_user:
            argv = ["runuser", "-u", self.as_user, "--"] + argv
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=120)
        if check and r.returncode != 0:
            linetest.fail(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n"
                          f"{self.log_tail()}")
        return r

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, errors="replace") as f:
                return "--- postgres log:\n" + f.read()[-n:]
        except OSError:
            return ""

    def start(self):
        """Starts the server and waits until it accepts connections."""
        self._run(["pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", self.log_path])
        self.running = True

    def stop(self, mode="fast"):
        """Stops the server (pg_ctl stop -m MODE): fast drops every client."""
        if self.running:
            self._run(["pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", self.data],
                      check=False)
            self.running = False

    def connect(self, dbname="postgres", user="postgres", password=None, autocommit=True):
        """A psycopg2 connection: over the Unix socket (trusted) by default,
        over TCP on 127.0.0.1 when a password is given."""
        pg = psycopg2()
        if password is None:
            conn = pg.connect(host=self.sockdir, port=self.port, dbname=dbname, user=user)
        else:
            conn = pg.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                              password=password)
        conn.autocommit = autocommit
        return conn

    def create_role(self, role, password, dbname):
        """A login role with a password and a database it owns; returns the
        libpq conninfo a station would use (password included)."""
        with contextlib.closing(self.connect()) as c, c.cursor() as cur:
            cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
            cur.execute(f'CREATE DATABASE "{dbname}" OWNER "{role}"')
        return self.conninfo(role, password, dbname)

    def conninfo(self, role, password, dbname):
        """A libpq conninfo over TCP; password None leaves it out (for a
        passfile)."""
        pw = f"password={password} " if password is not None else ""
        return (f"host=127.0.0.1 port={self.port} dbname={dbname} user={role} "
                f"{pw}connect_timeout=5")

    def passfile(self, folder, role, password, dbname="*", name="pgpass"):
        """Writes a libpq passfile (mode 0600, or libpq ignores it) for
        role on this server into folder; returns its path."""
        path = os.path.join(folder, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"127.0.0.1:{self.port}:{dbname}:{role}:{password}\n")
        return path

    def query(self, dbname, sql, args=None):
        """Rows of one statement, run as the superuser."""
        with contextlib.closing(self.connect(dbname)) as c, c.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _servers:
            _servers.remove(self)


@atexit.register
def _close_all():
    for s in list(_servers):
        s.close()


@contextlib.contextmanager
def server(prefix="vigil-pg-"):
    """A started server, stopped and removed on the way out, even on
    failure (and at exit, should the test call sys.exit inside)."""
    pg = Postgres(prefix)
    try:
        pg.start()
        yield pg
    except Exception:
        print(pg.log_tail())
        raise
    finally:
        pg.close()
