"""Shared pieces of the tests that run vigil-sim and vigild whole over
loopback: free ports, outcomes, simulated parts, a vigild process, and the
parts of a vigild configuration that every such test writes the same way."""
import atexit
import os
import signal
import socket
import subprocess
import sys


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def skip(msg):
    print("SKIP:", msg)
    sys.exit(77)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries(build):
    """Paths of vigil-sim and vigild in a build directory."""
    return os.path.join(build, "tools", "vigil-sim"), os.path.join(build, "app", "vigild")


def generate_parts(build, out, parts, seed, split="e2e"):
    """vigil-sim's simulated parts (images and vibration.wav) in out."""
    subprocess.run([binaries(build)[0], "generate", "--out", out, "--parts", str(parts),
                    "--seed", str(seed), "--split", split], check=True,
                   stdout=subprocess.DEVNULL)


def camera_section(sim_dir, frame_timeout_ms=5000, elements="", extra=""):
    """[camera.top]: the simulated parts' images, one frame per trigger;
    elements (e.g. "identity sleep-time=N ! ") go after the decoder."""
    return f"""[camera.top]
pipeline = multifilesrc location={sim_dir}/images/part-%05d.png index=0 caps=image/png ! pngdec ! {elements}videoconvert ! appsink name=sink
trigger = sequence
frame_timeout_ms = {frame_timeout_ms}
{extra}"""


class Vigild:
    """vigild on a configuration file, its output appended to log_path."""

    def __init__(self, build, conf, log_path):
        self.log_path = log_path
        self.log = open(log_path, "a+")
        self.p = subprocess.Popen([binaries(build)[1], "--config", conf], stdout=self.log,
                                  stderr=subprocess.STDOUT)
        # A test that fails midway leaves no vigild behind.
        atexit.register(lambda: self.p.poll() is None and self.p.kill())

    def running(self):
        return self.p.poll() is None

    def stop(self, timeout=60):
        """SIGTERM (a clean stop: the parts in flight finish); its exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=timeout)
        self.log.flush()
        return rc

    def text(self):
        with open(self.log_path) as f:
            return f.read()


def line_config(cameras, sim_dir, root, plc_port, db, vibration_extra="",
                deadline_ms=2000, plc_extra="", tail="", window_timeout_ms=5000,
                package=None):
    """A vigild configuration: the given [camera.*] sections, the simulated
    line's vibration recording (SKF 6205 bearing for the condition
    figures), the shipped synthetic model (or package), the PLC on
    plc_port (plc_extra: more [plc] keys), db, and tail (more sections)."""
    package = package or f"{root}/models/synthetic-v1"
    return f"""{cameras}
[vibration.drive_end]
pipeline = filesrc location={sim_dir}/vibration.wav ! wavparse ! audioconvert ! audioresample ! appsink name=sink
mode = sequence
rate_hz = 12000
window = 2048
stride = 2048
timeout_ms = {window_timeout_ms}
shaft_hz = 29.95
bearing_balls = 9
ball_diameter_mm = 7.94
pitch_diameter_mm = 39.04
{vibration_extra}
[model]
package = {package}
backend = opencv

[plc]
host = 127.0.0.1
port = {plc_port}
poll_ms = 2
reject_deadline_ms = {deadline_ms}
{plc_extra}
[database]
path = {db}
{tail}"""
