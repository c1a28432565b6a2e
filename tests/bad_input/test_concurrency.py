"""Concurrency and interruption: two runs into one output folder, a SIGKILL during a save,
failed saves and runs, recorder sessions that must never truncate an earlier recording."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from badinput import Catalogue, check

from sigformer.atomic import OutputFolderError, OutputLock, OutputLockedError, published
from sigformer.bundle import Bundle
from sigformer.tasks import PipelineConfigError

CASES = Catalogue("concurrency")
case = CASES.case

HOLDER = """
import sys, time
from sigformer.atomic import OutputLock
lock = OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""

SAVER = """
import sys
from sigformer.bundle import Bundle
bundle = Bundle.load(sys.argv[1])
n = 0
while True:
    bundle.provenance["generation"] = n
    bundle.save(sys.argv[2])
    print(n, flush=True)
    n += 1
"""


def _start(script: str, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # the child is past its first lock / save
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@case("two-runs-one-folder", "a second run into an output folder another run is writing",
      OutputLockedError, r"out is being written by another run \(pid \d+, started",
      r"wait for it to finish or choose another output folder \(--out\)")
def _(ctx):
    from sigformer.tasks import load_task_config, run_task

    holder = _start(HOLDER, ctx.tmp / "out")
    try:
        cfg = load_task_config({"data": {"source": "bonn"}})  # fails at once if it ever ran
        run_task(cfg, ctx.tmp / "out", log=lambda *a: None)
    finally:
        _stop(holder)


@case("lock-wait-timeout", "waiting for a busy output folder past the timeout",
      OutputLockedError, r"is being written by another run \(pid \d+",
      r"choose another output folder")
def _(ctx):
    holder = _start(HOLDER, ctx.tmp / "out")
    try:
        OutputLock(ctx.tmp / "out", wait=True, timeout=0.3).acquire()
    finally:
        _stop(holder)


@case("sigkill-during-save", "SIGKILL while a bundle is being saved over the previous one",
      None, r"after SIGKILL the bundle loads: generation \d+", r"no partial files")
def _(ctx):
    target = ctx.tmp / "bundle"
    Bundle.load(ctx.shared.eeg_bundle).save(target)
    saver = _start(SAVER, ctx.shared.eeg_bundle, target)
    time.sleep(0.15)
    _stop(saver)
    loaded = Bundle.load(target)  # verifies checksums: the previous or the new one, whole
    leftovers = [p.name for p in ctx.tmp.iterdir() if p.name != "bundle"]
    assert all(name.startswith(".bundle.staging-") for name in leftovers), leftovers
    return (f"after SIGKILL the bundle loads: generation {loaded.provenance['generation']}; "
            f"no partial files at the bundle path")


@case("failed-save-keeps-previous", "a save that fails half-way (unserialisable metadata)",
      TypeError, r"object is not JSON-serialisable", r"checkpoint metadata must be plain values")
def _(ctx):
    bundle = Bundle.load(ctx.shared.eeg_bundle)
    target = ctx.tmp / "bundle"
    bundle.save(target)
    before = _snapshot(target)
    bundle.extra = {"callback": object()}
    try:
        bundle.save(target)
    finally:
        assert _snapshot(target) == before  # nothing lost, nothing mixed
        assert [p.name for p in ctx.tmp.iterdir()] == ["bundle"]


@case("failed-run-keeps-previous", "a run that fails after starting keeps the earlier outputs",
      PipelineConfigError, r"data\.path is required", r"for source 'bonn'")
def _(ctx):
    from sigformer.tasks import load_task_config, run_task

    out = ctx.tmp / "out"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    (out / "pipeline.json").write_text("{}")  # an earlier run's outputs, both files of one
    try:
        run_task(load_task_config({"data": {"source": "bonn"}}), out, log=lambda *a: None)
    finally:
        assert json.loads((out / "metrics.json").read_text()) == {"accuracy": 0.9}
        assert sorted(p.name for p in ctx.tmp.iterdir()) == ["out"]  # the lock file goes too


@case("out-is-a-users-folder", "a run into a folder holding the user's own files",
      OutputFolderError, r"already holds files sigformer did not write \(notes.txt\)",
      r"Give a new or empty folder")
def _(ctx):
    from sigformer.tasks import load_task_config, run_task

    out = ctx.tmp / "project"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    try:
        run_task(load_task_config({"train": {"max_epochs": 1}}), out, log=lambda *a: None)
    finally:
        assert (out / "notes.txt").read_text() == "keep me"


@case("save-over-a-file", "a bundle saved to a path that is an existing file",
      NotADirectoryError, r"bundle exists and is not a folder",
      r"expected a folder path \(or a new name\)", before="crash")
def _(ctx):
    (ctx.tmp / "bundle").write_text("my notes")
    try:
        Bundle.load(ctx.shared.eeg_bundle).save(ctx.tmp / "bundle")
    finally:
        assert (ctx.tmp / "bundle").read_text() == "my notes"


@case("published-error", "an exception while writing a published folder", RuntimeError,
      r"disk full \(simulated\)", r"previous content kept")
def _(ctx):
    target = ctx.tmp / "out"
    target.mkdir()
    (target / "a.txt").write_text("previous")
    try:
        with published(target) as staging:
            (staging / "a.txt").write_text("new")
            raise RuntimeError("disk full (simulated); previous content kept")
    finally:
        assert (target / "a.txt").read_text() == "previous"
        assert [p.name for p in ctx.tmp.iterdir()] == ["out"]


@case("recorder-second-session", "a second recorder session on the same file name", None,
      r"second session wrote preds-2\.sgrec", r"first recording intact \(2 rows\)")
def _(ctx):
    import numpy as np

    from sigformer.streaming.sinks import Recorder, read_recorder

    first = Recorder(ctx.tmp / "preds.sgrec", ["a", "b"])
    first.write_rows(np.array([0.0, 1.0]), np.array([[0.1, 0.9], [0.2, 0.8]]))
    first.close()
    second = Recorder(ctx.tmp / "preds.sgrec", ["a", "b"])
    second.close()
    rows = len(read_recorder(ctx.tmp / "preds.sgrec").timestamps)
    assert rows == 2
    return f"second session wrote {second.path.name}; first recording intact ({rows} rows)"


@case("recorder-failed-start", "a stream that fails to start with a recording path", None,
      r"failed start left .*preds\.sgrec untouched", r"new session file preds-2\.sgrec")
def _(ctx):
    import numpy as np

    from sigformer.streaming.sinks import Recorder

    rec = Recorder(ctx.tmp / "preds.sgrec", ["left", "right"])
    rec.write_rows(np.array([0.0]), np.array([[0.3, 0.7]]))
    rec.close()
    before = (ctx.tmp / "preds.sgrec").read_bytes()
    bundle = Bundle.load(ctx.shared.eeg_bundle)
    from sigformer.streaming.app import default_sinks
    from sigformer.streaming.sources import ArraySource

    source = ArraySource(np.zeros((6, 10)), 100.0, ["a", "b", "c", "d", "e", "f"])
    sinks = default_sinks(bundle, source, record=str(ctx.tmp / "preds.sgrec"))
    from sigformer.channels import ChannelError
    from sigformer.streaming.app import stream_bundle

    with pytest.raises(ChannelError):  # no model channel is in the stream
        stream_bundle(bundle, source, sinks, log=lambda *a: None)
    for sink in sinks:
        sink.close()
    assert (ctx.tmp / "preds.sgrec").read_bytes() == before
    return (f"failed start left {ctx.tmp / 'preds.sgrec'} untouched; new session file "
            f"{sinks[-1].path.name}")


@case("recorder-torn-row", "a recording whose last row was cut by a kill", None,
      r"torn last row dropped: 2 whole rows", r"of 3 written")
def _(ctx):
    import numpy as np

    from sigformer.streaming.sinks import Recorder, read_recorder

    rec = Recorder(ctx.tmp / "p.sgrec", ["a", "b"])
    rec.write_rows(np.arange(3.0), np.ones((3, 2)))
    rec.close()
    raw = (ctx.tmp / "p.sgrec").read_bytes()
    (ctx.tmp / "p.sgrec").write_bytes(raw[:-5])
    n = len(read_recorder(ctx.tmp / "p.sgrec").timestamps)
    assert n == 2
    return f"torn last row dropped: {n} whole rows of 3 written"


@case("recorder-wrong-file", "read_recorder on a file that is not a recording", ValueError,
      r"notes\.txt is not a sigformer recorder file", r"expected a file written by Recorder",
      before="unclear")
def _(ctx):
    from sigformer.streaming.sinks import read_recorder

    (ctx.tmp / "notes.txt").write_text("hello")
    read_recorder(ctx.tmp / "notes.txt")


@case("stale-staging", "a staging folder left by a run killed long ago", None,
      r"stale staging folder removed", r"bundle loads")
def _(ctx):
    target = ctx.tmp / "bundle"
    stale = ctx.tmp / ".bundle.staging-old"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    Bundle.load(ctx.shared.eeg_bundle).save(target)
    assert not stale.exists()
    Bundle.load(target)
    return "stale staging folder removed on the next save; the bundle loads"


@pytest.mark.parametrize("case", CASES.params())
def test_concurrency(case, ctx):
    check(case, ctx)
