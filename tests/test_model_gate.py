#!/usr/bin/python3
"""The gate on a model package's own held-out figures ([model]
min_heldout_parts, min_heldout_accuracy, max_heldout_escape_rate,
max_heldout_false_reject_rate; docs/model.md), with vigild whole in the
server role and pymodbus as the PLC. The bad package is a copy of
synthetic-v2 whose [metrics] say what issue 23's two-epoch package said: every
good part rejected (false reject rate 1.0).

  start   the bad package as [model]: vigild exits, naming the package, the
          figure, its value and the limit (the default's key, or the
          FILE:LINE: [model] KEY that sets it); a package without [metrics]
          is refused where a limit is set and starts, with a warning and a
          model-loaded event, on the defaults; backend auto among them:
          the log names the backend it chose and every candidate's time,
          the event the backend.
  switch  the PLC selects a job with the bad package while parts flow: it is
          refused (status bit 11, error 12), the running model goes on
          judging every part (rows name synthetic-2), a model-refused event
          names the package and the figure; a job with a good package then
          runs, and each model that began judging has a model-loaded event;
          a restart on the refused job from the state file starts on job 0
          with error 12.

usage: test_model_gate.py BUILD_DIR SOURCE_ROOT SCENARIO
"""
import os
import re
import sqlite3

from linetest import Vigild, fail
from plctest import ERR_PKG_GATE, ST_JOB_LOADING, ST_JOB_REFUSED, scenario_main
from test_plc_handshake import PartFlow, check_models, config, finish, package_copy, start

BAD_VERSION = "synthetic-2-two-epoch"
# backend = auto (the default) on the CPU: whichever backend wins here
ON = r"(opencv|onednn|reference) fp32"


def auto_backends(env):
    """The backends auto times (inference.h, infer_auto_candidates; the
    reference executor only when no other loads): onednn where it is
    built, which its test binary says."""
    onednn = os.path.exists(os.path.join(env["build"], "tests", "test-inference-onednn"))
    return ["opencv", "onednn"] if onednn else ["opencv"]


def bad_package(env):
    return package_copy(env, "two-epoch", edit=lambda t: t.replace(
        "version=synthetic-2", f"version={BAD_VERSION}").replace(
        "heldout_false_reject_rate=0.0036", "heldout_false_reject_rate=1.0000"))


def no_metrics_package(env):
    """synthetic-v2 as trained without a held-out set (tools/train.py
    writes heldout_parts=0 and no rates then)."""
    def edit(t):
        head = t[:t.index("[metrics]")]
        return head + "[metrics]\nheldout_parts=0\n"
    return package_copy(env, "no-metrics", edit=edit)


def model_config(env, package, model_extra="", name="vigild.conf", tail=""):
    """config() of test_plc_handshake with [model] package = package and
    model_extra more [model] keys; (path, 1-based line of each extra key)."""
    conf = config(env, name=name, tail=tail)
    with open(conf) as f:
        text = f.read()
    shipped = f"package = {env['root']}/models/synthetic-v2\n"
    if shipped not in text:
        fail(f"{conf} has no line {shipped!r}")
    text = text.replace(shipped, f"package = {package}\n{model_extra}")
    with open(conf, "w") as f:
        f.write(text)
    lines = {ln.split("=")[0].strip(): i + 1 for i, ln in enumerate(text.splitlines())
             if "=" in ln}
    return conf, lines


def events(env):
    con = sqlite3.connect(env["db"])
    got = con.execute("SELECT kind, message FROM events ORDER BY id").fetchall()
    con.close()
    print("events:", *got, sep="\n  ")
    return got


def refused_at_start(env, conf, *want):
    p = Vigild.once(env["build"], conf, timeout=120)
    print(p.stderr[-2000:])
    if p.returncode == 0:
        fail(f"vigild started on {conf}; want it refused")
    for w in want:
        if w not in p.stderr:
            fail(f"vigild's error lacks {w!r}: {p.stderr[-1000:]}")


def scenario_start(env):
    bad = bad_package(env)
    conf, _ = model_config(env, bad)
    refused_at_start(env, conf, f"model package {bad} (model {BAD_VERSION}) refused",
                     "its held-out false reject rate is 1.0000 ([metrics] "
                     "heldout_false_reject_rate), above 0.2",
                     "the default maximum of [model] max_heldout_false_reject_rate")
    conf, lines = model_config(env, bad, "max_heldout_false_reject_rate = 0.5\n",
                               name="strict.conf")
    refused_at_start(env, conf, f"model package {bad} (model {BAD_VERSION}) refused",
                     "its held-out false reject rate is 1.0000", "above 0.5, the maximum set "
                     f"at {conf}:{lines['max_heldout_false_reject_rate']}: [model] "
                     "max_heldout_false_reject_rate")

    bare = no_metrics_package(env)
    conf, lines = model_config(env, bare, "min_heldout_parts = 100\n", name="parts.conf")
    refused_at_start(env, conf, f"model package {bare} (model synthetic-2) refused",
                     f"no held-out parts ([metrics] heldout_parts in its manifest), which "
                     f"{conf}:{lines['min_heldout_parts']}: [model] min_heldout_parts demands")

    # On the defaults a package without figures runs, and says so.
    conf, _ = model_config(env, bare, name="bare.conf")
    with open(conf) as f:  # [model] backend left to its default, auto
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("backend = opencv\n", ""))
    v, plc = start(env, conf)
    text = finish(v, plc)
    if "model synthetic-2 has no held-out figures" not in text or bare not in text:
        fail("no warning that the package's held-out figures went unchecked")
    loaded = [m for k, m in events(env) if k == "model-loaded"]
    if not (len(loaded) == 1 and re.fullmatch(
            re.escape(f"model synthetic-2 ({bare}) runs job 0 from the start on ") + ON,
            loaded[0])):
        fail(f"model-loaded events {loaded}")
    # backend = auto (the default) names what it chose, and the others' times
    chose = re.search(r"model synthetic-2: backend (\S+) fp32 \(auto: [0-9.]+ ms a part"
                      r"((?:, \S+ [0-9.]+ ms)*)", text)
    if not chose:
        fail("vigild's log does not say which backend auto chose, and why")
    timed = {chose.group(1)} | set(re.findall(r", (\S+) [0-9.]", chose.group(2)))
    if timed != set(auto_backends(env)):
        fail(f"auto said {chose.group(0)!r}; want every one of {auto_backends(env)} timed")


def scenario_switch(env):
    bad = bad_package(env)
    good = package_copy(env, "good", edit=lambda t: t.replace(
        "version=synthetic-2", "version=synthetic-2-b"))
    tail = f"\n[job.2]\npackage = {bad}\n\n[job.3]\npackage = {good}\n"
    conf = config(env, tail=tail)
    version = {0: "synthetic-2", 3: "synthetic-2-b"}
    v, plc = start(env, conf)
    flow = PartFlow(plc, 100, 0)
    for _ in range(3):
        flow.part()
    flow.select(2, runs=False)
    st = flow.until("job 2 refused", lambda s: s[1] & ST_JOB_REFUSED)
    if st[2] != ERR_PKG_GATE or st[3] != 0 or st[1] & ST_JOB_LOADING:
        fail(f"after selecting job 2: error {st[2]} (want {ERR_PKG_GATE}), active job {st[3]} "
             f"(want 0), status {st[1]:#x}")
    flow.select(3)
    st = flow.until("job 3 running", lambda s: s[3] == 3 and not s[1] & ST_JOB_LOADING)
    if st[1] & ST_JOB_REFUSED or st[2]:
        fail(f"job 3 runs, yet status {st}")
    flow.drain()
    text = finish(v, plc)
    # Every part triggered while job 0 ran, the refusal included, was judged
    # by synthetic-2; never by the refused package.
    check_models(env, flow, version, ["synthetic-2", "synthetic-2-b"])
    ev = events(env)
    refused = [m for k, m in ev if k == "model-refused"]
    loaded = [m for k, m in ev if k == "model-loaded"]
    want = (f"job 2: model package {bad} (model {BAD_VERSION}) refused: its held-out false "
            "reject rate is 1.0000 ([metrics] heldout_false_reject_rate), above 0.2")
    if len(refused) != 1 or not refused[0].startswith(want) or \
            not refused[0].endswith("job 0 (model synthetic-2) keeps running"):
        fail(f"model-refused events {refused}, want one starting {want!r}")
    want_loaded = [re.escape(f"model synthetic-2 ({env['root']}/models/synthetic-v2) runs job 0 "
                             "from the start on ") + ON,
                   re.escape(f"model synthetic-2-b ({good}) runs job 3 on ") + ON +
                   re.escape(", replacing synthetic-2 (job 0)")]
    if len(loaded) != 2 or not all(re.fullmatch(w, m) for w, m in zip(want_loaded, loaded)):
        fail(f"model-loaded events {loaded}")
    if want not in text:
        fail("no warning about the refused package in vigild's log")

    # The refused job as the kept selection: vigild starts on job 0 and the
    # PLC sees why.
    with open(env["db"] + ".plc-state", "w") as f:
        f.write("job=2\n")
    v, plc = start(env, conf)
    st = plc.status()
    finish(v, plc)
    if st[3] != 0 or not st[1] & ST_JOB_REFUSED or st[2] != ERR_PKG_GATE:
        fail(f"starting on job 2: status {st}, want job 0 and error {ERR_PKG_GATE}")
    refused = [m for k, m in events(env) if k == "model-refused"]
    if len(refused) != 2 or not refused[1].startswith(want):
        fail(f"no model-refused event for job 2 at start: {refused}")


SCENARIOS = {"start": scenario_start, "switch": scenario_switch}


def main():
    # switch raises parts for as long as the good package takes to load
    # (test_plc_handshake.py's job-model allows for a busy host the same way).
    scenario_main(__doc__, SCENARIOS, "vigil-gate-", lambda n: 240 if n == "switch" else 3, 7)


if __name__ == "__main__":
    main()
