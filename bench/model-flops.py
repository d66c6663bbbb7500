#!/usr/bin/python3
"""Arithmetic of a model package a part: the multiply-adds of every Conv
and Gemm in its three modules, from the ONNX graphs and their inferred
shapes, printed as GFLOP (2 FLOPs a multiply-add) per module and in all.

    /usr/bin/python3 bench/model-flops.py models/real-v5 [models/OTHER ...]

Pooling, Relu, Concat and the like are left out (under 1 % on Vigil's
networks); the figure is what issue 20's "FLOPs a part" compares.
"""
import configparser
import os
import sys

import onnx
from onnx import numpy_helper, shape_inference


def shapes(model):
    """Every tensor's shape by name: inputs, initializers and the
    intermediate values shape inference finds."""
    g = shape_inference.infer_shapes(model).graph
    out = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        out[v.name] = dims
    for t in g.initializer:
        out[t.name] = list(numpy_helper.to_array(t).shape)
    return g, out


def module_flops(path):
    g, sh = shapes(onnx.load(path))
    macs = 0
    for n in g.node:
        if n.op_type == "Conv":
            w = sh[n.input[1]]                 # [Cout, Cin/groups, kh, kw]
            y = sh.get(n.output[0])
            if not y or 0 in y:
                sys.exit(f"model-flops: {path}: no shape for {n.name}'s output")
            macs += y[0] * y[1] * y[2] * y[3] * w[1] * w[2] * w[3]
        elif n.op_type in ("Gemm", "MatMul"):
            w = sh[n.input[1]]
            x = sh.get(n.input[0]) or [1]
            trans = any(a.name == "transB" and a.i for a in n.attribute)
            k, m = (w[1], w[0]) if trans else (w[0], w[1])
            macs += x[0] * k * m
    return 2 * macs


def main(argv):
    if not argv:
        sys.exit(__doc__)
    for pkg in argv:
        man = configparser.ConfigParser(interpolation=None)
        if not man.read(os.path.join(pkg, "manifest.ini")):
            sys.exit(f"model-flops: {pkg}: no manifest.ini")
        per = {m: module_flops(os.path.join(pkg, man[m]["file"]))
               for m in ("vision", "signal", "decision")}
        total = sum(per.values())
        print(f"{pkg} ({man['package'].get('version', '?')}): {total / 1e9:.3f} GFLOP a part "
              f"(vision {per['vision'] / 1e9:.3f}, signal {per['signal'] / 1e6:.2f} M, "
              f"decision {per['decision'] / 1e6:.3f} M)")


if __name__ == "__main__":
    main(sys.argv[1:])
