#!/usr/bin/python3
"""vigild refuses a bad configuration or model package before it touches the
line, and says exactly where the problem is (file, line, key). Each case
runs in a folder of its own, where the relative paths of the configuration
point: vigild must leave it as it found it (no database, no media folder).

usage: test_vigild_config.py BUILD_DIR SOURCE_ROOT
"""
import os
import shutil
import sys
import tempfile

from linetest import Vigild

build, root = sys.argv[1], sys.argv[2]
failures = []

default = Vigild.once(build, args=["--print-default-config"], check=True).stdout
if "[camera.top]" not in default or "synthetic-v2" not in default:
    failures.append("--print-default-config does not print the demo configuration")


def run_conf(tmp, text, name="bad.conf"):
    """vigild on text, run in a fresh folder; also what it left there."""
    work = tempfile.mkdtemp(dir=tmp)
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    p = Vigild.once(build, path, cwd=work)
    return path, p, sorted(set(os.listdir(work)) - {name})


def expect(tmp, label, text, *wants):
    """vigild refuses text with a message holding every one of wants
    ({path}: the file's path), and touches nothing."""
    path, p, left = run_conf(tmp, text)
    msg = p.stderr.strip()
    print(f"{label}: rc={p.returncode}: {msg}")
    if p.returncode == 0:
        failures.append(f"{label}: vigild accepted it")
    for want in wants:
        if want.format(path=path) not in msg:
            failures.append(f"{label}: message {msg!r} lacks {want.format(path=path)!r}")
    if left:
        failures.append(f"{label}: vigild left {left} behind")


def line_of(text, section, key):
    """The 1-based line of key in [section] of text (its first)."""
    group = None
    for n, l in enumerate(text.splitlines(), 1):
        l = l.strip()
        if l.startswith("["):
            group = l[1:l.rindex("]")]
        elif group == section and not l.startswith("#") and l.split("=", 1)[0].strip() == key:
            return n
    raise AssertionError(f"no {key} in [{section}]")


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


with tempfile.TemporaryDirectory(prefix="vigil-conf-") as tmp:
    # Every case below edits the default configuration and expects the
    # message of that one edit: a key the default itself gave twice would
    # fail them all.
    lines = default.splitlines()
    port_line = next(i for i, l in enumerate(lines) if l.startswith("port")) + 1
    expect(tmp, "port out of range", edit(default, "port = 1502", "port = 99999"),
           "{path}:%d: [plc] port: 99999 is out of range 1..65535" % port_line)
    batch_line = next(i for i, l in enumerate(lines) if l.startswith("max_batch")) + 1
    expect(tmp, "max_batch zero", edit(default, "max_batch = 1", "max_batch = 0"),
           "{path}:%d: [model] max_batch: 0 is out of range 1..64" % batch_line)
    expect(tmp, "max_batch too large", edit(default, "max_batch = 1", "max_batch = 1000"),
           "{path}:%d: [model] max_batch: 1000 is out of range 1..64" % batch_line)
    expect(tmp, "max_batch not a number", edit(default, "max_batch = 1", "max_batch = many"),
           "{path}:%d: [model] max_batch:" % batch_line)
    expect(tmp, "unknown key", edit(default, "[database]\n", "[database]\npaht = x.db\n"),
           "[database] paht: unknown key")
    expect(tmp, "retention shorter than the protected days",
           edit(default, "[database]\n", "[database]\nmax_age_days = 3\nprotect_days = 7\n"),
           "[database] max_age_days: 3 is less than protect_days (7)")
    expect(tmp, "negative disk budget",
           edit(default, "[database]\n", "[database]\ndisk_budget_mb = -5\n"),
           "[database] disk_budget_mb")
    expect(tmp, "unknown section", default + "\n[camerа]\nx = 1\n", "unknown section")
    expect(tmp, "bad trigger mode", edit(default, "trigger = sequence", "trigger = sometimes"),
           "[camera.top] trigger: 'sometimes' is not one of: sequence, timestamp")
    expect(tmp, "syntax error", default + "\nthis line is not a key\n", "{path}:")
    expect(tmp, "second vibration source",
           default + "\n[vibration.fan]\npipeline = audiotestsrc ! appsink name=sink\n",
           "[vibration.fan]: a second [vibration.NAME] section")
    expect(tmp, "missing pipeline", edit(default, "pipeline = multifilesrc", "#pipeline = multifilesrc"),
           "[camera.top]: missing required key 'pipeline'")

    # A key given twice: GKeyFile would keep the second; vigild names both.
    expect(tmp, "key given twice", edit(default, "port = 1502", "port = 1502\nport = 1503"),
           "{path}:%d: [plc] port: given twice (first at line %d)" % (port_line + 1, port_line))
    text = default + "\n[plc]\nport = 1600\n"
    expect(tmp, "key given twice in a repeated section", text,
           "{path}:%d: [plc] port: given twice (first at line %d)"
           % (len(text.splitlines()), port_line))

    # Pipelines, checked by GStreamer when the line builds them, and the
    # model package, checked when it loads, name the setting they refuse.
    cam_line = line_of(default, "camera.top", "pipeline")
    expect(tmp, "camera pipeline with an unknown element",
           edit(default, "! pngdec !", "! nosuchdecoder !"),
           '{path}:%d: [camera.top] pipeline: no element "nosuchdecoder"' % cam_line)
    expect(tmp, "camera pipeline without appsink",
           edit(default, "videoconvert ! appsink name=sink", "videoconvert ! fakesink"),
           "{path}:%d: [camera.top] pipeline: no appsink named sink: the pipeline must end in "
           "'appsink name=sink'" % cam_line)
    vib_line = line_of(default, "vibration.drive_end", "pipeline")
    expect(tmp, "vibration pipeline with an unknown element",
           edit(default, "! wavparse !", "! nosuchparser !"),
           '{path}:%d: [vibration.drive_end] pipeline: no element "nosuchparser"' % vib_line)
    expect(tmp, "vibration pipeline without appsink",
           edit(default, "audioresample ! appsink name=sink", "audioresample ! fakesink"),
           "{path}:%d: [vibration.drive_end] pipeline: no appsink named sink" % vib_line)
    flat_line = line_of(default, "vibration.drive_end", "timeout_ms") + 1
    expect(tmp, "flat level that leaves no window standing",
           edit(default, "\ntimeout_ms = 3000\n", "\ntimeout_ms = 3000\nflat_level = 0.3\n"
                "clip_level = 0.1\n"),
           "{path}:%d: [vibration.drive_end] flat_level: 0.3 is not below twice clip_level "
           "(0.1): every window would be flat or clipped" % flat_line)
    expect(tmp, "window does not fit the model", edit(default, "window = 2048", "window = 1024"),
           "{path}:%d: [vibration.drive_end] window: model package " % line_of(
               default, "vibration.drive_end", "window"),
           "the vibration window is 1024 samples at 12000 Hz but model synthetic-2 wants "
           "2048 samples at 12000 Hz")
    expect(tmp, "rate does not fit the model", edit(default, "rate_hz = 12000", "rate_hz = 16000"),
           "{path}:%d: [vibration.drive_end] rate_hz: model package " % line_of(
               default, "vibration.drive_end", "rate_hz"),
           "2048 samples at 16000 Hz but model synthetic-2 wants 2048 samples at 12000 Hz")

    # A database that cannot be opened: the folder it names is not made.
    nodir = os.path.join(tmp, "no-such-dir")
    expect(tmp, "database cannot be opened",
           edit(default, "path = vigil.db", f"path = {nodir}/vigil.db"),
           "{path}:%d: [database] path: cannot open %s/vigil.db: unable to open database file"
           % (line_of(default, "database", "path"), nodir))
    if os.path.exists(nodir):
        failures.append(f"database cannot be opened: {nodir} was made")

    tx = "\n[transmitter.housing]\nhost = 127.0.0.1\nvelocity_register = 100\n"
    expect(tmp, "transmitter word order", default + tx + "word_order = BADC\n",
           "[transmitter.housing] word_order: 'BADC' is not one of: ABCD, CDAB")
    expect(tmp, "transmitter without registers",
           default + "\n[transmitter.housing]\nhost = 127.0.0.1\n",
           "[transmitter.housing] velocity_register: no register to read")
    expect(tmp, "transmitter host and device", default + tx + "device = /dev/ttyUSB0\n",
           "[transmitter.housing] host: give either host (Modbus TCP) or device")

    # An IIO vibration source replaces the pipeline (libiio's xml backend
    # reads a context description; a missing one is refused by name).
    iio = edit(default, "[vibration.drive_end]\n", "[vibration.drive_end]\n"
               "iio_uri = xml:/nonexistent/adxl355.xml\niio_device = adxl355\n"
               "iio_channel = accel_z\n")
    expect(tmp, "IIO context missing", iio,
           "{path}:%d: [vibration.drive_end] iio_uri: cannot open IIO context "
           "xml:/nonexistent/adxl355.xml" % line_of(iio, "vibration.drive_end", "iio_uri"))
    expect(tmp, "IIO without channel", edit(iio, "iio_channel = accel_z\n", ""),
           "[vibration.drive_end]: missing required key 'iio_channel'")

    # [model] precision: a value that is none, and one the backend cannot run.
    model_line = next(i for i, l in enumerate(lines) if l.startswith("backend")) + 2
    expect(tmp, "bad precision", edit(default, "backend = auto", "backend = auto\nprecision = fp8"),
           "{path}:%d: [model] precision: 'fp8' is not one of: fp32, fp16, bf16, int8"
           % model_line)
    expect(tmp, "precision the backend cannot run",
           edit(default, "backend = auto", "backend = opencv\nprecision = bf16"),
           "{path}:%d: [model] precision: the opencv backend does not run bf16 (it runs: fp32)"
           % model_line)
    # auto runs on the CPU backends only, and none of them runs fp16.
    expect(tmp, "auto with a precision no CPU backend runs",
           edit(default, "backend = auto", "backend = auto\nprecision = fp16"),
           "{path}:%d: [model] precision: backend auto has no CPU backend that runs fp16"
           % model_line)
    # [model] threads: a count, 0 for the library's own.
    expect(tmp, "bad threads", edit(default, "backend = auto", "backend = auto\nthreads = -2"),
           "{path}:%d: [model] threads: -2 is out of range 0..1024" % model_line)
    # int8 on a package without its calibration: refused, saying how to make one.
    nocal = os.path.join(tmp, "nocal")
    shutil.copytree(os.path.join(root, "models", "synthetic-v1"), nocal)
    if os.path.exists(os.path.join(nocal, "calibration-int8.ini")):
        os.unlink(os.path.join(nocal, "calibration-int8.ini"))
    text = "\n".join(l if not l.startswith("package") else f"package = {nocal}" for l in lines)
    expect(tmp, "int8 without calibration",
           edit(text, "backend = auto", "backend = reference\nprecision = int8"),
           "calibration-int8.ini")

    # A corrupt model package is refused, naming the file.
    pkg = os.path.join(tmp, "pkg")
    shutil.copytree(os.path.join(root, "models", "synthetic-v2"), pkg)
    with open(os.path.join(pkg, "signal.onnx"), "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    text = "\n".join(l if not l.startswith("package") else f"package = {pkg}" for l in lines)
    expect(tmp, "corrupt model", text, "signal.onnx: SHA-256")

    expect(tmp, "empty config", "", "no [vibration.NAME] section")
    p = Vigild.once(build, os.path.join(tmp, "nope.conf"))
    if p.returncode == 0 or "nope.conf" not in p.stderr:
        failures.append(f"nonexistent config: {p.stderr!r}")

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("PASS")
