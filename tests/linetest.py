"""Shared pieces of the tests that run vigil-sim and vigild whole over
loopback: free ports, outcomes, and the parts of a vigild configuration
that every such test writes the same way."""
import os
import socket
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


def line_config(cameras, sim_dir, root, plc_port, db, vibration_extra="",
                deadline_ms=2000):
    """A vigild configuration: the given [camera.*] sections, the simulated
    line's vibration recording (SKF 6205 bearing for the condition
    figures), the shipped synthetic model, vigil-sim as the PLC, and db."""
    return f"""{cameras}
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
{vibration_extra}
[model]
package = {root}/models/synthetic-v1
backend = opencv

[plc]
host = 127.0.0.1
port = {plc_port}
poll_ms = 2
reject_deadline_ms = {deadline_ms}

[database]
path = {db}
"""
