"""Burst decisions in the IQ stream: ``sigformer stream`` gives the decisions of
``classify-iq --decision burst`` (same labels and probabilities, whatever the chunking),
causally: quiet frames give nothing, a burst's frames come out when it ends, a long burst is
decided every ``max_burst_frames`` frames, the end of the stream emits the burst held."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from repo_scripts import cli_json

from sigformer.bundle import Bundle
from sigformer.cli import main
from sigformer.data.sigmf_io import write_sigmf
from sigformer.models import create_model
from sigformer.rf.amr import BurstGroups, classify_sigmf, frame_bursts
from sigformer.spec import SignalSpec
from sigformer.streaming.app import OnlineSettings, build_online
from sigformer.streaming.runtime import Smoother, StreamWarning
from sigformer.streaming.sources import SigMFSource
from sigformer.tasks.config import PipelineConfigError

L = 128  # frame length of the model
SPS = 8
NOISE = 1e-3  # amplitude of the silence between bursts: -60 dB, far below the 30 dB gate


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    torch.manual_seed(2)  # a seed whose untrained model does not call every frame the same
    spec = SignalSpec.iq(1.0, L)
    model = create_model("clst", "tiny", n_outputs=4, n_times=L).eval()
    return Bundle(model=model, task="classify", input_spec=spec, model_spec=spec,
                  labels=["BPSK", "QPSK", "FSK", "OOK"],
                  extra={"normalization": "rms", "rate_agnostic": True, "decision": "burst"}
                  ).save(tmp_path_factory.mktemp("burst") / "bundle")


@pytest.fixture(scope="module")
def bundle(bundle_dir) -> Bundle:
    return Bundle.load(bundle_dir)


def _modulated(kind: str, n: int, amplitude: float, rng) -> np.ndarray:
    n_sym = -(-n // SPS)
    if kind == "BPSK":
        symbols = rng.choice([-1.0, 1.0], n_sym).astype(complex)
    elif kind == "QPSK":
        symbols = np.exp(1j * np.pi / 2 * rng.integers(0, 4, n_sym) + 1j * np.pi / 4)
    elif kind == "OOK":
        symbols = rng.integers(0, 2, n_sym).astype(complex)
        symbols[0] = 1.0
    elif kind == "CW":  # a steady carrier: such frames do not vote in a burst
        return amplitude * np.exp(2j * np.pi * 0.01 * np.arange(n))
    else:  # FSK: two tones, constant envelope
        bits = np.repeat(rng.choice([-1.0, 1.0], n_sym), SPS)[:n]
        return amplitude * np.exp(2j * np.pi * np.cumsum(0.05 * bits))
    return amplitude * np.repeat(symbols, SPS)[:n]


def _capture(seed: int) -> np.ndarray:
    """Bursts of known modulations (and steady carriers) separated by silence (short gaps that max_gap bridges and
    long ones), not aligned to frames. The first burst (QPSK at full scale) is the loudest,
    so the stream's gate (loudest so far) and classify-iq's (loudest of all) agree; later
    bursts are within 6 dB of it, so even a frame holding one sample of a burst edge is
    kept by both (-27 dB and up)."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(rng.integers(0, 2 * L)), complex)]  # noise before the first burst
    for k in range(int(rng.integers(2, 6))):
        kind = "QPSK" if k == 0 else str(rng.choice(["BPSK", "QPSK", "FSK", "OOK", "CW"]))
        amplitude = 1.0 if k == 0 else 10 ** (-rng.uniform(0, 6) / 20)
        parts.append(_modulated(kind, int(rng.integers(L // 2, 12 * L)), amplitude, rng))
        parts.append(np.zeros(int(rng.choice([rng.integers(1, L), rng.integers(2 * L, 8 * L)])),
                              complex))
    iq = np.concatenate(parts)
    noise = NOISE * (rng.standard_normal(len(iq)) + 1j * rng.standard_normal(len(iq)))
    return (iq + noise / np.sqrt(2)).astype(np.complex64)


def _chunks(n: int, cuts) -> list[tuple[int, int]]:
    edges = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return list(zip(edges[:-1], edges[1:]))


def _stream(bundle, path, cuts=(), **settings) -> tuple[list, object]:
    """The stream's predictions for a SigMF capture pushed in the given chunks, then the end
    of the stream (as the runner ends it)."""
    source = SigMFSource(path)
    online = build_online(bundle, OnlineSettings(**settings))
    online.configure(source.sfreq, source.channels)
    n = source.data.shape[1]
    predictions = []
    for a, b in _chunks(n, cuts):
        predictions += online.process(source.data[:, a:b], np.arange(a, b) / source.sfreq)
    return predictions + online.flush(), online


@pytest.fixture()
def one_thread():
    # both sides run the model in one thread, so the same batch gives the same outputs
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=hst.integers(0, 10_000), max_burst_frames=hst.sampled_from([3, 5, 64]),
       cuts=hst.lists(hst.integers(0, 100_000), max_size=15))
def test_stream_gives_classify_iq_burst_decisions_in_any_chunking(
        bundle, tmp_path_factory, one_thread, seed, max_burst_frames, cuts):
    path = write_sigmf(tmp_path_factory.mktemp("cap") / "cap", _capture(seed), sample_rate=1e6)
    offline = classify_sigmf(path, bundle.model, bundle.labels, normalization="rms",
                             min_power_db=30.0, decision="burst",
                             max_burst_frames=max_burst_frames)
    online, _ = _stream(bundle, path, cuts, max_burst_frames=max_burst_frames)
    frames = offline["frames"]
    # the same frames are kept (quiet ones give nothing), with the same probabilities and
    # labels. Not bit for bit: classify-iq runs all frames through the model in one pass, the
    # stream runs each group as it completes, and the same frame's outputs differ by ~1e-7
    # between batch sizes; so probabilities agree within 1e-6 and labels exactly, except
    # where the two most likely classes are within 1e-6 of each other (either may win)
    assert [p.start for p in online] == frames["start"].tolist()
    streamed = np.stack([p.probabilities for p in online])
    np.testing.assert_allclose(streamed, frames["probabilities"], rtol=0, atol=1e-6)
    top2 = np.sort(frames["probabilities"], 1)[:, -2:]
    tied = top2[:, 1] - top2[:, 0] <= 1e-6
    assert [p.label for p, t in zip(online, tied) if not t] == \
        [label for label, t in zip(frames["label"], tied) if not t]
    assert [p.window_index for p in online] == (frames["start"] // L).tolist()


def test_the_capture_generator_has_quiet_frames_and_several_bursts(bundle, tmp_path):
    # the property above is not vacuous: its captures have gaps, bursts and splits
    path = write_sigmf(tmp_path / "cap", _capture(1), sample_rate=1e6)
    predictions, online = _stream(bundle, path, max_burst_frames=3)
    n_frames = len(_capture(1)) // L
    assert 0 < len(predictions) < n_frames
    assert online.bursts.groups.n_bursts >= 2
    assert online.bursts.groups.n_groups > online.bursts.groups.n_bursts


def test_a_quiet_stream_gives_no_prediction(bundle, tmp_path):
    silent = write_sigmf(tmp_path / "zeros", np.zeros(20 * L, np.complex64), sample_rate=1e6)
    predictions, online = _stream(bundle, silent, [333, 1000])
    assert predictions == [] and online.bursts.groups.n_bursts == 0
    # a burst, then a long quiet tail: only the burst's frames are predicted
    rng = np.random.default_rng(0)
    iq = np.concatenate([_modulated("QPSK", 4 * L, 1.0, rng), np.zeros(30 * L)])
    iq = (iq + NOISE * rng.standard_normal(len(iq))).astype(np.complex64)
    tail = write_sigmf(tmp_path / "tail", iq, sample_rate=1e6)
    predictions, _ = _stream(bundle, tail, [L // 2, 7 * L])
    assert [p.window_index for p in predictions] == [0, 1, 2, 3]
    assert len({p.label for p in predictions}) == 1


def test_a_burst_longer_than_max_burst_frames_is_split_and_decided_as_it_goes(bundle,
                                                                              tmp_path):
    rng = np.random.default_rng(1)
    iq = _modulated("FSK", 10 * L, 1.0, rng).astype(np.complex64)
    path = write_sigmf(tmp_path / "long", iq, sample_rate=1e6)
    source = SigMFSource(path)
    online = build_online(bundle, OnlineSettings(max_burst_frames=4))
    online.configure(source.sfreq, source.channels)
    emitted = []  # which frames each chunk of one frame releases
    for k in range(10):
        emitted.append([p.window_index for p in online.process(
            source.data[:, k * L:(k + 1) * L], np.arange(k * L, (k + 1) * L) / 1e6)])
    assert emitted == [[], [], [], [0, 1, 2, 3], [], [], [], [4, 5, 6, 7], [], []]
    last = online.flush()
    assert [p.window_index for p in last] == [8, 9]  # the end of the stream emits the rest
    assert online.bursts.groups.n_bursts == 1 and online.bursts.groups.n_groups == 3
    # each group shares one decision; offline with the same bound splits it the same way
    offline = classify_sigmf(path, bundle.model, bundle.labels, normalization="rms",
                             decision="burst", max_burst_frames=4)
    assert [b["frames"] for b in offline["bursts"]] == [4, 4, 2]
    whole = classify_sigmf(path, bundle.model, bundle.labels, normalization="rms",
                           decision="burst")
    assert [b["frames"] for b in whole["bursts"]] == [10]


def test_the_end_of_the_stream_emits_the_held_burst_through_the_cli(bundle_dir, tmp_path,
                                                                    capsys):
    rng = np.random.default_rng(2)
    iq = np.concatenate([_modulated("QPSK", 5 * L, 1.0, rng), np.zeros(4 * L),
                         _modulated("BPSK", 6 * L, 0.8, rng)])  # runs to the end
    iq = (iq + NOISE * rng.standard_normal(len(iq))).astype(np.complex64)
    path = write_sigmf(tmp_path / "cap", iq, sample_rate=1e6)
    out = tmp_path / "annotated"
    assert main(["stream", str(bundle_dir), "--source", f"sigmf:{path}", "--chunk-size", "300",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"):])
    assert report["decision"] == "burst"
    assert report["bursts"] == report["burst_decisions"] == 2
    assert report["predictions"] == 11  # 5 + 6 frames: the last burst came out at the end
    assert report["quiet_frames"] == 4 and report["dropped_held_frames"] == 0  # the gap
    annotations = json.loads(Path(f"{out}.sigmf-meta").read_text())["annotations"]
    # one annotation per burst: its frames share one label, the gap ends the first
    assert [(a["core:sample_start"], a["core:sample_count"], a["sigformer:frames"])
            for a in annotations] == [(0, 5 * L, 5), (9 * L, 6 * L, 6)]
    # --decision frame: one prediction per window again, quiet ones included
    assert main(["stream", str(bundle_dir), "--source", f"sigmf:{path}",
                 "--decision", "frame"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"):])
    assert report["decision"] == "frame" and "bursts" not in report
    assert report["predictions"] == 15


def test_classify_iq_runs_the_model_once_over_all_frames(bundle, tmp_path):
    # many short groups, one batched pass (a pass per group made burst decisions ~8x slower)
    path = write_sigmf(tmp_path / "cap", _capture(4), sample_rate=1e6)
    calls = []
    hook = bundle.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = classify_sigmf(path, bundle.model, bundle.labels, normalization="rms",
                                decision="burst", max_burst_frames=2)
    finally:
        hook.remove()
    assert len(result["bursts"]) >= 3 and result["n_frames"] <= 256
    assert len(calls) == 1
    # and each group still gets one decision of its own
    labels = result["frames"]["label"]
    starts = result["frames"]["start"].tolist()
    for b in result["bursts"]:
        first = starts.index(b["start"])
        assert set(labels[first:first + b["frames"]]) == {b["label"]}


def _stream_report(bundle_dir, path, capsys, *extra) -> dict:
    return cli_json(capsys, ["stream", str(bundle_dir), "--source", f"sigmf:{path}", *extra])


def test_max_predictions_is_exact_even_when_a_burst_completes_many(bundle_dir, tmp_path,
                                                                   capsys):
    rng = np.random.default_rng(3)
    iq = np.concatenate([_modulated("QPSK", 5 * L, 1.0, rng), np.zeros(4 * L),
                         _modulated("BPSK", 6 * L, 0.8, rng)])
    iq = (iq + NOISE * rng.standard_normal(len(iq))).astype(np.complex64)
    path = write_sigmf(tmp_path / "cap", iq, sample_rate=1e6)
    out = tmp_path / "annotated"
    # the first burst completes 5 predictions at once, the held one would come at the end
    report = _stream_report(bundle_dir, path, capsys, "--max-predictions", "3", "--out",
                            str(out))
    assert report["predictions"] == 3
    annotations = json.loads(Path(f"{out}.sigmf-meta").read_text())["annotations"]
    assert sum(a["core:sample_count"] for a in annotations) == 3 * L
    # frame decisions: the capture's one chunk completes 15 windows, cut at the limit too
    report = _stream_report(bundle_dir, path, capsys, "--max-predictions", "4",
                            "--decision", "frame")
    assert report["predictions"] == 4


def _two_bursts(tmp_path, name: str = "cap") -> Path:
    """QPSK for 5 frames, 4 quiet frames, BPSK for 6 frames (to the end)."""
    rng = np.random.default_rng(2)
    iq = np.concatenate([_modulated("QPSK", 5 * L, 1.0, rng), np.zeros(4 * L),
                         _modulated("BPSK", 6 * L, 0.8, rng)])
    iq = (iq + NOISE * rng.standard_normal(len(iq))).astype(np.complex64)
    return write_sigmf(tmp_path / name, iq, sample_rate=1e6)


def test_flags_given_override_the_yaml_stream_section(bundle_dir, tmp_path, capsys):
    import yaml

    path = _two_bursts(tmp_path)
    pipeline = tmp_path / "stream.yaml"
    pipeline.write_text(yaml.safe_dump({"task": "classify", "stream": {
        # no hop_s: one frame, the IQ default (a fixed 0.5 s used to give one sample)
        "decision": "frame", "max_burst_frames": 2,
        "output": {"lsl_name": None},
        "source": {"kind": "sigmf", "path": str(path), "realtime": False,
                   "chunk_size": 300}}}))

    def run(*flags) -> dict:
        return cli_json(capsys, ["stream", str(pipeline), "--model", str(bundle_dir), *flags])

    # no flag: the YAML's frame decisions (over the bundle's own burst default)
    report = run()
    assert report["decision"] == "frame" and "bursts" not in report
    assert report["predictions"] == 15
    # --decision burst wins; the YAML's max_burst_frames (not given) still applies: the
    # 5- and 6-frame bursts are decided in groups of at most 2 frames
    report = run("--decision", "burst")
    assert report["decision"] == "burst" and report["predictions"] == 11
    assert (report["bursts"], report["burst_decisions"]) == (2, 3 + 3)
    report = run("--decision", "burst", "--max-burst-frames", "64")
    assert (report["bursts"], report["burst_decisions"]) == (2, 2)
    # --all-frames over the YAML's gate: the quiet gap is kept, one burst of all 15 frames
    report = run("--decision", "burst", "--max-burst-frames", "64", "--all-frames")
    assert (report["bursts"], report["predictions"], report["quiet_frames"]) == (1, 15, 0)
    # --source reads another capture with the YAML's source settings
    short = _modulated("QPSK", 3 * L, 1.0, np.random.default_rng(5)).astype(np.complex64)
    other = write_sigmf(tmp_path / "short", short, sample_rate=1e6)
    report = run("--source", f"sigmf:{other}")
    assert report["decision"] == "frame" and report["predictions"] == 3
    # an override obeys the YAML's rules, and the error names the stream key
    assert main(["stream", str(pipeline), "--model", str(bundle_dir),
                 "--max-burst-frames", "0"]) == 2
    assert "stream.max_burst_frames" in capsys.readouterr().err


def test_a_spike_that_silences_the_stream_is_counted_and_said(bundle, tmp_path):
    # a burst, a one-frame spike 40 dB louder, then the same signal for 300 frames: the gate
    # follows the spike for good (it never decays, as classify-iq's), so nothing after it is
    # predicted and the held burst is dropped too; the report counts it and a warning says so
    rng = np.random.default_rng(4)
    iq = np.concatenate([_modulated("QPSK", 4 * L, 1.0, rng),
                         _modulated("QPSK", L, 100.0, rng),
                         _modulated("QPSK", 300 * L, 1.0, rng)]).astype(np.complex64)
    path = write_sigmf(tmp_path / "spike", iq, sample_rate=1e6)
    with pytest.warns(StreamWarning, match=r"(?s)frames were quiet.*never decays.*"
                                           r"--min-power-db.*--all-frames") as caught:
        predictions, online = _stream(bundle, path, [5000])
    assert len([w for w in caught if issubclass(w.category, StreamWarning)]) == 1  # once
    assert [p.window_index for p in predictions] == [4]
    groups = online.bursts.groups
    assert (groups.n_quiet, groups.n_dropped) == (300, 4)
    # the same stream without the gate predicts every frame, and warns of nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamWarning)
        predictions, online = _stream(bundle, path, [5000], min_power_db=None)
    assert len(predictions) == 305 and online.bursts.groups.n_quiet == 0


def test_silence_before_any_burst_is_not_said():
    # a stream that has not started (no kept frame yet) is quiet as expected
    from sigformer.streaming.runtime import BurstDecisions

    decisions = BurstDecisions(runner=None, window=L, hop=L, quiet_window=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamWarning)
        for i in range(40):
            assert decisions.push(i, np.zeros((2, L)), float(i)) == []
    assert decisions.groups.n_quiet == 40 and not decisions.quiet_warned
    with pytest.raises(ValueError, match="quiet_window"):
        BurstDecisions(runner=None, window=L, hop=L, quiet_window=0)


def test_decision_frame_is_unchanged(bundle, tmp_path):
    path = write_sigmf(tmp_path / "cap", _capture(3), sample_rate=1e6)
    predictions, online = _stream(bundle, path, [500, 777], decision="frame")
    assert online.bursts is None and online.decision == "frame"
    source = SigMFSource(path)
    n = source.data.shape[1] // L
    windows = source.data[:, :n * L].astype(np.float64).reshape(2, n, L).transpose(1, 0, 2)
    assert [p.window_index for p in predictions] == list(range(n))  # quiet windows too
    np.testing.assert_array_equal(np.stack([p.probabilities for p in predictions]),
                                  np.concatenate([online.runner(w[None]) for w in windows]))


def test_bad_decision_settings_are_refused(bundle, capsys):
    with pytest.raises(SystemExit):
        main(["stream", "bundle", "--source", "sigmf:x.sigmf-meta", "--decision", "capture"])
    assert "invalid choice: 'capture'" in capsys.readouterr().err
    with pytest.raises(PipelineConfigError, match=r"decision must be one of \['frame', "
                                                  r"'burst'\], got 'capture'"):
        build_online(bundle, OnlineSettings(decision="capture"))
    odd = Bundle(model=bundle.model, task="classify", input_spec=bundle.input_spec,
                 model_spec=bundle.model_spec, labels=bundle.labels,
                 extra={**bundle.extra, "decision": "majority"})
    with pytest.raises(PipelineConfigError, match=r"extra\['decision'\] must be one of"):
        build_online(odd, OnlineSettings())
    with pytest.raises(PipelineConfigError, match="max_burst_frames"):
        build_online(bundle, OnlineSettings(max_burst_frames=0))
    with pytest.raises(PipelineConfigError, match="min_power_db"):
        build_online(bundle, OnlineSettings(min_power_db=-30.0))
    eeg = Bundle(model=bundle.model, task="classify", input_spec=SignalSpec.eeg(100.0, ["C3"]),
                 model_spec=SignalSpec.eeg(100.0, ["C3"], 128), labels=bundle.labels)
    with pytest.raises(PipelineConfigError, match="IQ classification bundles"):
        build_online(eeg, OnlineSettings(decision="burst"))


def test_smoothing_is_not_applied_to_burst_decisions_and_says_so(bundle):
    with pytest.warns(StreamWarning, match="smoothing 'ema' is not applied"):
        build_online(bundle, OnlineSettings(smoothing=Smoother("ema")))


# --- the grouping shared by classify_sigmf and the stream -----------------------------------

def _ids(groups) -> list[list[int]]:
    return [g.indices for g in groups]


def test_burst_groups_join_short_gaps_and_split_long_ones():
    groups = BurstGroups(max_gap=1)
    out = []
    for i in [0, 1, 3, 6, 7]:  # one missing frame between 1 and 3, two between 3 and 6
        out += groups.push(i)
    assert _ids(out) == [[0, 1, 3]]
    assert _ids(groups.flush()) == [[6, 7]] and groups.n_bursts == 2


def test_burst_groups_gate_drops_held_noise_when_the_burst_arrives():
    groups = BurstGroups(max_gap=1, max_burst_frames=8, min_power_db=30.0)
    out = []
    for i, power in enumerate([1e-6, 1e-6, 1.0, 1.0, 1e-6, 1e-6, 0.5, 0.0]):
        out += groups.push(i, item=i, power=power)
    # the noise floor before the burst was held while it was the loudest: dropped, not sent
    assert _ids(out) == [[2, 3]] and out[0].items == [2, 3] and out[0].new_burst
    assert _ids(groups.flush()) == [[6]]  # a frame with no power is never a signal
    assert groups.skip(9) == [] and groups.n_bursts == 2
    # counted: frames 0 and 1 dropped from the hold; 4, 5 and 7 quiet when they came
    assert (groups.n_dropped, groups.n_quiet) == (2, 3)


def test_burst_groups_missing_frames_end_a_burst_and_indices_must_increase():
    groups = BurstGroups(max_gap=0)
    assert groups.push(0) == [] and _ids(groups.skip(1)) == [[0]]
    with pytest.raises(ValueError, match="must increase: 1 after 1"):
        groups.push(1)
    with pytest.raises(ValueError, match="max_gap"):
        BurstGroups(max_gap=-1)
    with pytest.raises(ValueError, match="finite power"):
        BurstGroups(min_power_db=30.0).push(0, power=None)


def test_yaml_stream_section_carries_the_decision():
    from sigformer.streaming.app import settings_from_config
    from sigformer.tasks import load_task_config
    from sigformer.tasks.config import PipelineConfigError

    cfg = load_task_config({"task": "classify", "stream": {
        "decision": "burst", "min_power_db": 20.0, "max_burst_frames": 16}})
    settings = settings_from_config(cfg)
    assert (settings.decision, settings.min_power_db, settings.max_burst_frames) == \
        ("burst", 20.0, 16)
    assert settings_from_config(load_task_config({"task": "classify"})).decision is None
    with pytest.raises(PipelineConfigError, match="decision"):
        load_task_config({"task": "classify", "stream": {"decision": "bursts"}})


def test_burst_groups_equal_frame_bursts_on_random_frames():
    # the reviewer's randomized check, seeded: the causal grouping is frame_bursts exactly
    # (ungated, unbounded), a bound only cuts bursts into groups, and with the loudest frame
    # first the stream's gate keeps what classify-iq's gate (loudest of all) keeps
    rng = np.random.default_rng(20261130)
    for _ in range(200):
        n, hop = int(rng.integers(0, 60)), int(rng.choice([1, 64, 128]))
        max_gap = int(rng.integers(0, 4))
        present = rng.random(n) < rng.uniform(0.2, 1.0)
        indices = np.flatnonzero(present)
        groups = BurstGroups(max_gap)
        out = [g for i in indices for g in groups.push(i, item=int(i))] + groups.flush()
        bursts = frame_bursts(indices * hop, hop, max_gap)
        expected = [indices[bursts == b].tolist() for b in np.unique(bursts)]
        assert _ids(out) == expected and [g.items for g in out] == expected
        assert groups.n_bursts == groups.n_groups == len(expected)
        assert all(g.new_burst for g in out)
        # bounded: the same bursts, cut into groups of at most max_burst_frames
        bound = int(rng.integers(1, 6))
        groups = BurstGroups(max_gap, bound)
        out = [g for i in indices for g in groups.push(i)] + groups.flush()
        assert all(len(g.indices) <= bound for g in out)
        joined = []
        for g in out:
            if g.new_burst:
                joined.append([])
            joined[-1] += g.indices
        assert joined == expected and groups.n_bursts == len(expected)
        # gated, the loudest frame first; silent (zero-power) and missing frames among them
        if n == 0:
            continue
        min_db = float(rng.choice([10.0, 30.0]))
        power = 10 ** rng.uniform(-5, 0, n)
        power[rng.random(n) < 0.1] = 0.0
        power[0], present[0] = 2.0, True
        groups = BurstGroups(max_gap, None, min_db)
        out = []
        for i in range(n):
            out += groups.push(i, power=power[i]) if present[i] else groups.skip(i)
        out += groups.flush()
        kept = np.flatnonzero(present & (power >= power.max() * 10 ** (-min_db / 10)))
        bursts = frame_bursts(kept * hop, hop, max_gap)
        assert _ids(out) == [kept[bursts == b].tolist() for b in np.unique(bursts)]
        assert groups.n_quiet == int(present.sum()) - len(kept) and groups.n_dropped == 0


NOISE_POWERS = [1.1e-4, 0.9e-4, 1.1e-4, 0.9e-4, 0.9e-4, 0.9e-4, 0.9e-4]  # about -40 dB


def _pushed(powers: list[float], groups: BurstGroups) -> list[tuple[int, list[int], bool]]:
    """(frame at which each group was handed back, its indices, new burst), then the flush."""
    out = []
    for i, power in enumerate(powers):
        out += [(i, g.indices, g.new_burst) for g in groups.push(i, i, power)]
    return out + [(len(powers), g.indices, g.new_burst) for g in groups.flush()]


def test_noise_just_above_a_partial_first_frames_gate_does_not_become_a_burst():
    """A burst's partial first frame (-9.7 dB) raises the gate part of the way; noise frames
    just above that gate were handed back at once as a burst of their own (the stream found 3
    bursts where classify-iq found 1). They now wait until the gate holds: the full-power
    frame drops them, as classify-iq's whole-capture gate does."""
    groups = BurstGroups(max_gap=1, min_power_db=30.0)
    got = _pushed(NOISE_POWERS + [0.107] + [1.0] * 5, groups)
    assert got == [(13, [7, 8, 9, 10, 11, 12], True)]
    assert groups.n_bursts == 1 and groups.n_dropped == 7


def test_runs_split_off_by_the_gate_are_handed_back_once_it_holds():
    """When the burst gets no louder, the noise run above the gate is a burst after all:
    handed back at the next frame (one frame later than before), before the running burst."""
    groups = BurstGroups(max_gap=1, min_power_db=30.0)
    got = _pushed(NOISE_POWERS + [0.107, 0.1, 0.1], groups)
    assert got == [(8, [0, 2], True), (10, [7, 8, 9], True)]
    assert groups.n_bursts == 2
