#!/usr/bin/env python3
"""Turns a text file into a C header holding it as one string constant."""
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    text = f.read()
lines = []
for line in text.splitlines(keepends=True):
    esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines.append('\t"' + esc + '"')
with open(dst, "w", encoding="utf-8") as f:
    f.write("/* Generated from %s by app/embed.py. */\n" % src.split("/")[-1])
    f.write("static const char vigild_default_conf[] =\n")
    f.write("\n".join(lines) if lines else '\t""')
    f.write(";\n")
