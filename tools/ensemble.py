#!/usr/bin/python3
"""Joins model packages trained by tools/train.py (the same recipe, other
seeds) into one package whose scores are the members' averaged.

    /usr/bin/python3 tools/ensemble.py --member DIR --member DIR [...] \\
        --out MODEL_DIR --features-tool build/tools/vigil-features \\
        --val-manifest CSV --val-root DIR [--val-split val] --frr-target 0.01

The package has the usual three modules (docs/model.md, "Seed ensembles"),
so vigild, vigil-eval and every backend run it as any other:

  vision.onnx    every member's vision module on the one image; output
                 [mean of the members' surface logits, member 1's output,
                 member 2's, ...] and the mean of their defect maps
  signal.onnx    the same over the signal modules
  decision.onnx  each member's decision module on its own members' columns
                 of the vision and signal outputs; output the mean of their
                 fused logits

built from the members' ONNX graphs with the operators they already use
(Concat, Gemm and a 1x1 Conv to average). The joined modules are checked
under OpenCV DNN against the members run one by one, and the thresholds
are chosen afresh on the held-out set (tools/train.py calibrate()), since
an average of logits is not scaled like any one member's.
"""
import argparse
import configparser
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402  (the package format, features, calibration)

TOLERANCE = 1e-4   # joined against members, float32 through OpenCV DNN
MODULES = ("vision", "signal", "decision")


# The name log() and fail() print: the tool that runs this module's code
# (fuse.py and recalibrate.py set theirs).
TOOL = "ensemble"


def log(msg):
    print(f"{TOOL}: {msg}", flush=True)


def fail(msg):
    sys.exit(f"{TOOL}: {msg}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--member", action="append", required=True,
                   help="a model package to join (twice or more)")
    p.add_argument("--out", required=True, help="model package folder to write")
    held_out_args(p, "midway", "the check, the thresholds and [metrics]")
    p.add_argument("--scores-out", help="write the joined package's OpenCV scores of the "
                   "held-out parts here (CSV, manifest order)")
    p.add_argument("--name", default="ensemble", help="[package] name")
    p.add_argument("--version", default="ensemble-1", help="[package] version")
    a = p.parse_args(argv)
    if len(a.member) < 2:
        p.error("give at least two --member packages")
    check_held_out_args(p, a)
    return a


def held_out_args(p, rule, use):
    """The options of a tool that runs packages on a held-out set and
    chooses thresholds there (ensemble.py, fuse.py, recalibrate.py):
    the features tool, the set, the false-reject target and the marginal
    rule (default rule) and budget; use says what the set is for."""
    p.add_argument("--features-tool", required=True, help="path of vigil-features")
    p.add_argument("--val-manifest", required=True, help=f"held-out manifest for {use}")
    p.add_argument("--val-root", help="folder of the held-out manifest's paths "
                   "(default: the manifest's folder)")
    p.add_argument("--val-split", help="use the held-out manifest's rows of this split only")
    p.add_argument("--frr-target", type=float, required=True,
                   help="false-reject rate the thresholds are chosen for (e.g. 0.01)")
    p.add_argument("--marginal-rule", choices=("midway", "tight"), default=rule,
                   help="where the marginal threshold goes (tools/train.py calibrate())")
    p.add_argument("--marginal-budget", type=float,
                   help="lower the reject threshold until at most this share of the held-out "
                   "parts (e.g. 0.04) is marginal, sent to a manual check; the parts above "
                   "are rejected outright (calibrate())")


def check_held_out_args(p, a):
    """held_out_args' ranges, and the held-out root's default."""
    if a.marginal_budget is not None and not 0 <= a.marginal_budget <= 1:
        p.error("--marginal-budget must be a share between 0 and 1")
    if not 0 <= a.frr_target < 1:
        p.error("--frr-target must be a share between 0 and 1")
    if not a.val_root:
        a.val_root = os.path.dirname(os.path.abspath(a.val_manifest))


class Member:
    """One package: its manifest and its three modules, checked against
    their SHA-256 as vigild checks them."""

    def __init__(self, folder):
        self.dir = folder
        path = os.path.join(folder, "manifest.ini")
        self.man = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",),
                                             inline_comment_prefixes=None)
        self.man.optionxform = str
        if not self.man.read(path):
            fail(f"{path}: cannot read the manifest")
        self.path = path
        self.files, self.graphs = {}, {}
        for m in MODULES:
            f = os.path.join(folder, self.get(m, "file"))
            if train.sha256(f) != self.get(m, "sha256").lower():
                fail(f"{f}: SHA-256 does not match [{m}] sha256 in {path}")
            self.files[m] = f
            self.graphs[m] = onnx.load(f)
        self.vision_out = int(self.get("vision", "output_dim"))
        self.signal_out = int(self.get("signal", "output_dim"))
        self.heatmap = self.man.get("vision", "heatmap_output", fallback=None)

    def get(self, group, key):
        try:
            return self.man.get(group, key)
        except (configparser.NoSectionError, configparser.NoOptionError):
            fail(f"{self.path}: [{group}] {key} is missing")


# Keys that must agree: the members see the same image and the same
# vibration features, and their maps lie on the same grid.
SHARED_KEYS = [("vision", k) for k in ("input_width", "input_height", "resize", "mean", "std",
                                       "heatmap_output", "heatmap_width", "heatmap_height")] + \
              [("signal", k) for k in ("features", "rate_hz", "window", "input_dim")]


def check_members(members):
    first = members[0]
    for m in members:
        # The joined package is written anew and would drop it silently.
        if m.man.has_section("dark"):
            fail(f"{m.path}: has [dark], which a joined package would not keep: join the "
                 "package it was made from, then run tools/recalibrate.py --dark on the result")
    for m in members[1:]:
        for group, key in SHARED_KEYS:
            a = first.man.get(group, key, fallback=None)
            b = m.man.get(group, key, fallback=None)
            if a != b:
                fail(f"{m.path}: [{group}] {key} is {b}, but {first.path} has {a}: "
                     "members must share their inputs")
    seen = {}
    for m in members:
        digest = m.get("vision", "sha256")
        if digest in seen:
            fail(f"{m.dir} and {seen[digest]} have the same vision module")
        seen[digest] = m.dir


def graph_input(g):
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        fail(f"graph {g.name} has {len(inputs)} inputs, expected 1")
    return inputs[0]


def renamed(g, prefix, input_name):
    """g's nodes and initializers with every name under prefix and the
    graph's input called input_name; also the new names of its outputs."""
    old_input = graph_input(g).name

    # torch names nodes "/body/body.0/Conv": one slash after the prefix
    def name(n):
        return n if n == "" else input_name if n == old_input else prefix + n.lstrip("/")
    nodes = []
    for n in g.node:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        c.name = prefix + (n.name or n.op_type).lstrip("/")
        c.ClearField("input")
        c.input.extend(name(x) for x in n.input)
        c.ClearField("output")
        c.output.extend(name(x) for x in n.output)
        nodes.append(c)
    inits = []
    for t in g.initializer:
        c = onnx.TensorProto()
        c.CopyFrom(t)
        c.name = prefix + t.name.lstrip("/")
        inits.append(c)
    return nodes, inits, {o.name: name(o.name) for o in g.output}


def const(name, array):
    return numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name)


def gemm(name, x, w, out, nodes, inits, bias=None):
    """out = x @ w.T + bias (w: [outputs, inputs]; bias zero when None)."""
    inits += [const(name + "/weight", w),
              const(name + "/bias", np.zeros(w.shape[0]) if bias is None else bias)]
    nodes.append(helper.make_node("Gemm", [x, name + "/weight", name + "/bias"], [out],
                                  name=name, transB=1))


def mean_and_members(dims):
    """[1 + sum(dims), sum(dims)]: row 0 the mean of each block's first
    column (the members' logits), then every column as it is."""
    w = np.zeros((1 + sum(dims), sum(dims)))
    at = 0
    for d in dims:
        w[0, at] = 1 / len(dims)
        at += d
    w[1:, :] = np.eye(sum(dims))
    return w


def model(g, like):
    m = helper.make_model(g, opset_imports=list(like.opset_import),
                          producer_name="vigil tools/ensemble.py")
    m.ir_version = like.ir_version
    onnx.checker.check_model(m)
    return m


def heads_on_input(members, prefixes, module, in_name):
    """Every member's vision or signal module, its names under its prefix,
    reading in_name: (nodes, initializers, the output vectors' names,
    the maps' names, empty for modules without)."""
    nodes, inits, outs, maps = [], [], [], []
    for prefix, m in zip(prefixes, members):
        n, t, names = renamed(m.graphs[module].graph, prefix, in_name)
        nodes += n
        inits += t
        vec = [o for o in names if o != m.heatmap]
        if len(vec) != 1:
            fail(f"{m.files[module]}: {len(vec)} outputs besides the map, expected 1")
        outs.append(names[vec[0]])
        if m.heatmap in names:
            maps.append(names[m.heatmap])
    return nodes, inits, outs, maps


def decisions_on_columns(members, prefixes, in_name):
    """Every member's decision module on its own columns of [vision output,
    signal output] of the joined package (a Gemm that selects them; each
    output begins with one column before the members'): (nodes,
    initializers, the fused logits' names, the joined input's width)."""
    v_total = 1 + sum(m.vision_out for m in members)
    s_total = 1 + sum(m.signal_out for m in members)
    nodes, inits, outs = [], [], []
    v_at, s_at = 1, v_total + 1
    for prefix, m in zip(prefixes, members):
        pick = np.zeros((m.vision_out + m.signal_out, v_total + s_total))
        pick[:m.vision_out, v_at:v_at + m.vision_out] = np.eye(m.vision_out)
        pick[m.vision_out:, s_at:s_at + m.signal_out] = np.eye(m.signal_out)
        v_at += m.vision_out
        s_at += m.signal_out
        gemm(prefix + "columns", in_name, pick, prefix + in_name, nodes, inits)
        n, t, names = renamed(m.graphs["decision"].graph, prefix, prefix + in_name)
        if len(names) != 1:
            fail(f"{m.files['decision']}: {len(names)} outputs, expected 1")
        nodes += n
        inits += t
        outs += names.values()
    return nodes, inits, outs, v_total + s_total


def join_head(members, module, in_name, out_name, out_dim, map_out=None, map_shape=None):
    """vision or signal: every member on the shared input, then [mean logit,
    members' outputs] (and the mean of their maps, map_out)."""
    nodes, inits, outs, maps = heads_on_input(members, [f"m{i + 1}/" for i in
                                                        range(len(members))], module, in_name)
    dims = [getattr(m, module + "_out") for m in members]
    nodes.append(helper.make_node("Concat", outs, ["members/" + out_name], axis=1,
                                  name="members/" + out_name))
    gemm("mean/" + out_name, "members/" + out_name, mean_and_members(dims), out_name,
         nodes, inits)
    first = members[0].graphs[module].graph
    outputs = [helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT,
                                             [1, out_dim])]
    if map_out:
        nodes.append(helper.make_node("Concat", maps, ["members/" + map_out], axis=1,
                                      name="members/" + map_out))
        k = len(members)
        inits += [const("mean/map/weight", np.full((1, k, 1, 1), 1 / k)),
                  const("mean/map/bias", np.zeros(1))]
        nodes.append(helper.make_node("Conv", ["members/" + map_out, "mean/map/weight",
                                               "mean/map/bias"], [map_out],
                                      name="mean/" + map_out, kernel_shape=[1, 1]))
        outputs.append(helper.make_tensor_value_info(map_out, onnx.TensorProto.FLOAT,
                                                     map_shape))
    inp = onnx.ValueInfoProto()
    inp.CopyFrom(graph_input(first))
    inp.name = in_name
    g = helper.make_graph(nodes, f"ensemble_{module}", [inp], outputs, inits)
    return model(g, members[0].graphs[module])


def join_decision(members, in_name, out_name):
    """Each member's decision module on its own columns of [vision output,
    signal output] (a Gemm that selects them), then the mean."""
    nodes, inits, outs, width = decisions_on_columns(
        members, [f"m{i + 1}/" for i in range(len(members))], in_name)
    k = len(members)
    nodes.append(helper.make_node("Concat", outs, ["members/" + out_name], axis=1,
                                  name="members/" + out_name))
    gemm("mean/" + out_name, "members/" + out_name, np.full((1, k), 1 / k), out_name,
         nodes, inits)
    inp = helper.make_tensor_value_info(in_name, onnx.TensorProto.FLOAT, [1, width])
    out = helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, [1, 1])
    g = helper.make_graph(nodes, "ensemble_decision", [inp], [out], inits)
    return model(g, members[0].graphs["decision"])


def opencv_nets(paths):
    import cv2
    nets = tuple(cv2.dnn.readNetFromONNX(paths[k]) for k in MODULES)
    for net in nets:
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return nets


def run_all(nets, images, signals, with_map):
    """Every part through the three modules as vigild chains them:
    vision, signal and fused logits [N, 3], vision outputs, maps."""
    logits, vis, maps = [], [], []
    for i in range(len(images)):
        v, s, d, hm = train.opencv_forward(nets, images[i:i + 1], signals[i:i + 1], with_map)
        logits.append((v[0, 0], s[0, 0], d[0, 0]))
        vis.append(v[0])
        maps.append(hm.reshape(hm.shape[-2:]) if with_map else None)
    return np.array(logits, np.float64), np.array(vis), maps


def held_out(a, man):
    """The held-out parts (a.val_manifest, a.val_root, a.val_split)
    prepared by the C code vigild runs, for the package whose manifest is
    man: (the feature settings, labels as train.read_labels gives them,
    images, signal features)."""
    fa = argparse.Namespace(
        features_tool=a.features_tool, width=int(man.get("vision", "input_width")),
        height=int(man.get("vision", "input_height")), mean=float(man.get("vision", "mean")),
        std=float(man.get("vision", "std")), window=int(man.get("signal", "window")),
        rate=float(man.get("signal", "rate_hz")),
        resize=man.get("vision", "resize", fallback="stretch"))
    labels = train.read_labels(a.val_manifest, a.val_split)
    with tempfile.TemporaryDirectory(prefix="vigil-held-out-") as tmp:
        images, signals, _ = train.compute_features(fa, a.val_manifest, a.val_root,
                                                    a.val_split, os.path.join(tmp, "val.vgf"))
    return fa, labels, images, signals


def join(a, argv):
    """Writes the joined package into a.out."""
    members = [Member(d) for d in a.member]
    check_members(members)
    first = members[0]
    with_map = bool(first.heatmap)
    files = {m: m + ".onnx" for m in MODULES}
    paths = {m: os.path.join(a.out, f) for m, f in files.items()}
    vision_out = 1 + sum(m.vision_out for m in members)
    signal_out = 1 + sum(m.signal_out for m in members)
    map_shape = None
    if with_map:
        map_shape = [1, 1, int(first.get("vision", "heatmap_height")),
                     int(first.get("vision", "heatmap_width"))]
    joined = {
        "vision": join_head(members, "vision", "image", train.VISION_OUTPUT, vision_out,
                            first.heatmap, map_shape),
        "signal": join_head(members, "signal", "features", "signal", signal_out),
        "decision": join_decision(members, "vision_signal", "defect"),
    }
    for m in MODULES:
        onnx.save(joined[m], paths[m])
    log(f"joined {len(members)} members: vision output {vision_out}, signal output "
        f"{signal_out}, decision input {vision_out + signal_out}")

    g = first.man
    fa, (surf, vib, defect, classes), images, signals = held_out(a, g)

    # The joined modules against the members run one by one.
    logits, vis, maps = run_all(opencv_nets(paths), images, signals, with_map)
    runs = [run_all(opencv_nets(m.files), images, signals, with_map) for m in members]
    mean = np.mean([r[0] for r in runs], axis=0)
    diff = {name: np.abs(logits[:, col] - mean[:, col]).max()
            for col, name in ((2, "fused"), (0, "vision"), (1, "signal"))}
    diff["members"] = np.abs(vis[:, 1:] - np.concatenate([r[1] for r in runs], axis=1)).max()
    if with_map:
        diff["map"] = max(float(np.abs(maps[i] - np.mean([r[2][i] for r in runs], axis=0)).max())
                          for i in range(len(maps)))
    log(f"OpenCV DNN, joined against the members' mean on {len(images)} parts, max abs "
        "diff: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items()))
    if max(diff.values()) > TOLERANCE:
        fail("the joined modules do not compute the members' mean")

    for i, (m, r) in enumerate(zip(members, runs)):
        log(f"member {i + 1} {m.dir}: {aurocs(r[0], surf, vib, defect)}")
    log(f"joined: {aurocs(logits, surf, vib, defect)}")

    metrics = choose_thresholds(a, logits, surf, vib, defect, classes)
    # The manifest: the members' inputs, the joined outputs, new thresholds.
    take_inputs(a, fa)
    heatmap = (map_shape[3], map_shape[2]) if with_map else None
    notes = [f"Seed ensemble of {len(members)} packages, scores averaged (tools/ensemble.py):"]
    for m in members:
        notes.append(f"  {m.get('package', 'version')}: {m.get('package', 'trained_by')}")
    train.write_manifest(a, paths, files, int(g.get("signal", "input_dim")), metrics, argv,
                         heatmap, vision_out, signal_out, tool="tools/ensemble.py",
                         notes=notes)
    return sum(os.path.getsize(p) for p in paths.values())


def aurocs(lg, surf, vib, defect):
    """The fused, vision and signal AUROCs of held-out logits [N, 3], as a
    log line's words."""
    good = defect < 0.5
    return (f"AUROC fused {train.auroc(lg[defect > 0.5, 2], lg[good, 2]):.4f}"
            f" vision {train.auroc(lg[surf > 0.5, 0], lg[good, 0]):.4f}"
            f" signal {train.auroc(lg[vib > 0.5, 1], lg[good, 1]):.4f}")


def choose_thresholds(a, logits, surf, vib, defect, classes):
    """a.reject and a.marginal from the joined package's held-out logits
    (calibrate() under a's target, rule and budget), logged with the
    figures they give, which it returns; --scores-out written."""
    a.reject, a.marginal = train.calibrate(logits[:, 2], defect, a.frr_target, a.marginal_rule,
                                           a.marginal_budget)
    log(f"thresholds for {100 * a.frr_target:g} % false rejects on the held-out set: "
        f"reject {a.reject:.6g}, marginal {a.marginal:.6g}")
    metrics = train.figures(logits, surf, vib, defect, a.reject, a.marginal)
    log(f"held-out (OpenCV DNN): {metrics['parts']} parts, {metrics['defective']} defective; "
        f"escapes {metrics['escapes']} ({100 * metrics['escape_rate']:.2f} %); false rejects "
        f"{metrics['false_rejects']} ({100 * metrics['false_reject_rate']:.2f} %, at most "
        f"{100 * metrics['false_reject_upper95']:.2f} % on unseen good parts with 95 % "
        f"confidence); marginal {100 * metrics['marginal_rate']:.2f} % of the parts")
    if a.scores_out:
        p = train.sigmoid(logits)
        with open(a.scores_out, "w") as f:
            f.write("part_id,score,vision_score,signal_score\n")
            for c, t in zip(classes, p):
                f.write(f"{c[2]},{t[2]:.7g},{t[0]:.7g},{t[1]:.7g}\n")
    return metrics


def take_inputs(a, fa):
    """The joined package's input settings (held_out()'s fa) into a, for
    train.write_manifest."""
    a.width, a.height, a.mean, a.std = fa.width, fa.height, fa.mean, fa.std
    a.resize, a.rate, a.window = fa.resize, fa.rate, fa.window


def write_new_package(a, make, tool):
    """Runs make(a) with a.out a fresh folder beside the asked-for one and
    renames it into place when complete, so a refusal or a failed check
    leaves no half package and never touches an existing one. make returns
    the modules' size in bytes."""
    t_start = time.time()
    out = a.out
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        sys.exit(f"{tool}: {out} exists and is not empty: the package goes to a new folder")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    a.out = tempfile.mkdtemp(prefix=f".{tool}-", dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(a.out, 0o777 & ~umask)
        size = make(a)
        if os.path.isdir(out):
            os.rmdir(out)
        os.rename(a.out, out)
    except BaseException:
        shutil.rmtree(a.out, ignore_errors=True)
        raise
    print(f"{tool}: wrote {out} ({size / 1024:.0f} KiB of modules) in "
          f"{time.time() - t_start:.0f} s", flush=True)


def main(argv):
    a = parse_args(argv)
    write_new_package(a, lambda a: join(a, argv), "ensemble")


if __name__ == "__main__":
    main(sys.argv[1:])
