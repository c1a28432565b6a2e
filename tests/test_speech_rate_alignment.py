"""Separation / enhancement of audio at a rate other than the model's: the output comes back
at the input's rate, exactly as long as the input and aligned with it (zero lag), for whole
files (``stream_bundle``, ``sigformer separate`` / ``enhance``) and chunk by chunk; at the
model's rate nothing changes. Pass-through models make the expected output known: the input,
band-limited the way resampling to the model's rate and back band-limits it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.bundle import Bundle
from sigformer.spec import SignalSpec
from sigformer.stages.resample import resample_array
from sigformer.streaming.app import stream_bundle
from sigformer.streaming.processors import AudioStream
from sigformer.streaming.sources import ArraySource

N_MICS = 3
MAX_LAG = 300  # samples searched either side (the uncompensated lag was 40 to 110)


class PassThroughSeparation(torch.nn.Module):
    """``(1, n) -> (1, k, n)``: the mixture, then its negation (distinct sources, so the
    overlap-add speaker alignment keeps their order)."""

    def __init__(self, n_outputs: int):
        super().__init__()
        self.n_outputs = n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x, -x][:self.n_outputs], dim=1)


class PassThroughEnhancement(torch.nn.Module):
    """``(1, n_mics, n) -> (1, 1, n)``: the first microphone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def _bundle(task: str, model_rate: int, n_outputs: int = 1) -> Bundle:
    enhance = task == "enhance"
    model = PassThroughEnhancement() if enhance else PassThroughSeparation(n_outputs)
    spec = SignalSpec.audio(model_rate, N_MICS if enhance else 1)
    labels = ["enhanced"] if enhance else ["s1", "s2"][:n_outputs]
    return Bundle(model=model, task=task, input_spec=spec, model_spec=spec, labels=labels,
                  extra={"chunk_s": 0.25, "overlap_s": 0.05})


def _noise(n_channels: int, n: int, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal((n_channels, n))


def _band_limited(x: np.ndarray, rate: float, model_rate: float) -> np.ndarray:
    """What a pass-through model should return: ``x`` resampled (zero phase, whole array) to
    the model's rate and back, at ``x``'s length."""
    there = resample_array(x, rate, model_rate, phase="zero")
    return resample_array(there, model_rate, rate, phase="zero")[..., :x.shape[-1]]


def _lag(y: np.ndarray, ref: np.ndarray) -> int:
    """The shift of ``y`` against ``ref`` (positive: ``y`` late) that correlates best."""
    n = min(len(y), len(ref))
    lags = np.arange(-MAX_LAG, MAX_LAG + 1)
    corr = [y[max(k, 0):n + min(k, 0)] @ ref[max(-k, 0):n - max(k, 0)] for k in lags]
    return int(lags[int(np.argmax(corr))])


def _si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    scale = estimate @ reference / (reference @ reference)
    error = estimate - scale * reference
    return float(10 * np.log10(scale ** 2 * (reference @ reference) / (error @ error)))


def _stream(bundle: Bundle, x: np.ndarray, rate: int, chunk: int) -> tuple[np.ndarray, dict]:
    source = ArraySource(x, rate, [f"mic{i}" for i in range(x.shape[0])], chunk_size=chunk)
    report = stream_bundle(bundle, source, [], log=lambda *a: None, keep_outputs=True)
    blocks = report.pop("_outputs")
    assert [b.start for b in blocks] == list(np.cumsum([0] + [b.data.shape[1]
                                                              for b in blocks])[:-1])
    return np.concatenate([b.data for b in blocks], axis=1), report


@pytest.mark.parametrize("model_rate", [8000, 16000])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
@pytest.mark.parametrize("task,n_outputs", [("separate", 1), ("separate", 2), ("enhance", 1)])
def test_whole_file_comes_back_as_long_as_the_input_and_aligned(task, n_outputs, rate,
                                                                  model_rate):
    n = rate // 2 + 7  # 0.5 s, not a whole number of chunks or of resampling periods
    x = _noise(N_MICS if task == "enhance" else 1, n, seed=rate + model_rate)
    y, report = _stream(_bundle(task, model_rate, n_outputs), x, rate, chunk=rate // 3)
    assert y.shape == (n_outputs, n)
    expected = _band_limited(x[0], rate, model_rate)
    for sign, row in zip((1, -1), y):
        assert _lag(sign * row, expected) == 0
        assert _si_sdr(sign * row, expected) > 30
    resampled = rate != model_rate
    assert (report.get("resampled_from_hz") == rate) == resampled
    assert (report["resample_delay_samples"] > 0) == resampled


@pytest.mark.parametrize("rate,model_rate,delay", [
    (16000, 8000, 40), (8000, 16000, 20), (44100, 8000, 111), (22050, 16000, 28)])
def test_live_output_waits_for_the_reported_resampling_delay(rate, model_rate, delay):
    """Chunk by chunk the chain stays causal: output sample k leaves only once input sample
    k + delay has arrived (about 20 samples at the lower rate, rounded up to whole input
    samples), and the delay is reported."""
    proc = AudioStream(PassThroughSeparation(1), model_rate, multichannel=False,
                       chunk_s=0.02, overlap_s=0.005)
    proc.configure(rate, ["m"])
    assert proc.stats.resample_delay_samples == delay
    assert proc.stats.as_dict()["resample_delay_ms"] == pytest.approx(1e3 * delay / rate)
    x, fed, emitted = _noise(1, rate // 4), 0, 0
    for piece in np.array_split(x, 9, axis=1):
        fed += piece.shape[1]
        emitted += sum(b.data.shape[1] for b in proc.process(piece))
        assert emitted <= fed - delay
    assert emitted > 0  # the short chunks let output through before the end
    assert emitted + sum(b.data.shape[1] for b in proc.flush()) == x.shape[1]


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, 4000), min_size=1, max_size=6),
       rates=st.sampled_from([(22050, 8000), (16000, 8000), (8000, 16000)]))
def test_resampled_stream_in_any_chunks_equals_the_whole_file(cuts, rates):
    rate, model_rate = rates
    x = _noise(1, rate // 2, seed=3)

    def run(pieces):
        proc = AudioStream(PassThroughSeparation(2), model_rate, multichannel=False,
                           chunk_s=0.1, overlap_s=0.02)
        proc.configure(rate, ["m"])
        blocks = [b for p in pieces for b in proc.process(p)] + proc.flush()
        return np.concatenate([b.data for b in blocks], axis=1)

    edges = np.unique(np.clip(np.cumsum(cuts), 0, x.shape[1]))
    chunked = run(np.split(x, edges[edges < x.shape[1]], axis=1))
    whole = run([x])
    assert chunked.shape == whole.shape == (2, x.shape[1])
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_at_the_model_rate_the_stream_is_plain_overlap_add():
    """No resampling, no delay, nothing trimmed: bit for bit the chunked inference of the
    whole array, with a real (untrained) model."""
    from sigformer.models import create_model
    from sigformer.windowing import model_function, process_array

    torch.manual_seed(0)
    model = create_model("mossformer", "tiny", n_src=2, sample_rate=8000).eval()
    x = _noise(1, 5000, seed=4)
    proc = AudioStream(model, 8000, multichannel=False, chunk_s=0.25, overlap_s=0.05)
    proc.configure(8000, ["m"])
    blocks = proc.process(x) + proc.flush()
    expected = process_array(model_function(model), x, 2000, 400, align=True)
    np.testing.assert_array_equal(np.concatenate([b.data for b in blocks], axis=1),
                                  expected.astype(np.float32))
    assert proc.stats.resample_delay_samples == 0 and proc.resampled_from is None


@pytest.mark.parametrize("task,rate", [("enhance", 16000), ("separate", 44100)])
def test_cli_writes_files_as_long_as_the_input_and_aligned(task, rate, tmp_path, capsys,
                                                           monkeypatch):
    """The file commands (through the WAV sink) at another rate than the model's 8 kHz."""
    import soundfile as sf

    from sigformer.cli import main

    bundle = _bundle(task, 8000, n_outputs=2)
    monkeypatch.setattr(Bundle, "load", classmethod(lambda cls, source: bundle))
    n = rate // 2 + 3
    x = _noise(N_MICS if task == "enhance" else 1, n, seed=5)
    sf.write(tmp_path / "in.wav", x.T.astype(np.float32), rate, subtype="FLOAT")
    out = tmp_path / ("clean.wav" if task == "enhance" else "sep")
    assert main([task, str(tmp_path / "in.wav"), "--model", "pass-through", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(text[text.index("{"):])
    assert report["sample_rate"] == rate and report["model_rate"] == 8000
    expected = _band_limited(x[0].astype(np.float32).astype(np.float64), rate, 8000)
    assert len(report["outputs"]) == (1 if task == "enhance" else 2)
    for sign, path in zip((1, -1), sorted(report["outputs"])):
        audio, written_rate = sf.read(path)
        assert written_rate == rate and audio.shape == (n,)
        assert _lag(sign * audio, expected) == 0
        assert _si_sdr(sign * audio, expected) > 30


def test_unlabelled_separation_bundle_writes_every_source(tmp_path, capsys, monkeypatch):
    """A separation bundle saved without labels used to get the enhancement label, so the
    WAV sink wrote the first source only; now each source gets a file (out0, out1)."""
    import soundfile as sf

    from sigformer.cli import main
    from sigformer.streaming.processors import AudioStream
    from sigformer.validation import SignalError

    bundle = _bundle("separate", 8000, n_outputs=2)
    bundle.labels = []
    monkeypatch.setattr(Bundle, "load", classmethod(lambda cls, source: bundle))
    x = _noise(1, 4000, seed=2)
    sf.write(tmp_path / "in.wav", x.T.astype(np.float32), 8000, subtype="FLOAT")
    assert main(["separate", str(tmp_path / "in.wav"), "--model", "pass-through", "--out",
                 str(tmp_path / "sep")]) == 0
    text = capsys.readouterr().out
    outputs = json.loads(text[text.index("{"):])["outputs"]
    assert len(outputs) == 2
    first, second = (sf.read(p)[0] for p in sorted(outputs))
    np.testing.assert_allclose(first, -second, atol=1e-6)
    # more outputs than labels: refused, never written partly
    proc = AudioStream(PassThroughSeparation(2), 8000, multichannel=False, chunk_s=0.25,
                       overlap_s=0.05, labels=["only"])
    proc.configure(8000, ["mic0"])
    with pytest.raises(SignalError, match="2 output signal.*1 label"):
        proc.process(x.astype(np.float32)) + proc.flush()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_summary_line_names_the_resampling_delay_only_when_resampling(rate):
    x = _noise(1, rate // 2, seed=3)
    lines: list[str] = []
    source = ArraySource(x, rate, ["mic0"], chunk_size=rate // 4)
    report = stream_bundle(_bundle("separate", 8000, 1), source, [], log=lines.append)
    summary = lines[-1]
    if rate == 8000:
        assert "resampling delay" not in summary
    else:
        assert f"resampling delay {report['resample_delay_ms']:.1f} ms" in summary


def test_wrong_microphone_count_names_the_trained_array_and_what_to_give():
    from sigformer.data.room import SceneConfig
    from sigformer.streaming.processors import describe_array
    from sigformer.validation import SignalError

    array = SceneConfig(n_mics=4, radius=(0.05, 0.1)).array()
    proc = AudioStream(torch.nn.Identity(), 16000, multichannel=True, n_mics=4, array=array)
    with pytest.raises(SignalError, match=r"8 channels; this enhancement bundle takes 4 "
                                          r"microphones \(trained for a uniform circular, "
                                          r"horizontal array, radius 0.05-0.1 m, reference "
                                          r"microphone 0\): give 4 channels"):
        proc.configure(16000, [f"mic{i}" for i in range(8)])
    assert describe_array(None) == "" and "radius 0.08 m" in describe_array(
        {**array, "radius_m": 0.08})


def test_wrong_microphone_count_names_a_shipped_bundle_for_the_streams_array(tmp_path,
                                                                            monkeypatch):
    """An 8-channel stream into a 4-mic bundle: the error names the catalogue's enhancement
    bundles for 8 microphones (and none when the catalogue has none for that count)."""
    import json

    from sigformer import catalogue
    from sigformer.validation import SignalError

    for name, model, task, n_mics in (("enh-a-8mic", "deftan2", "enhance", 8),
                                      ("enh-b-4mic", "deftan2", "enhance", 4),
                                      ("sep-c", "mossformer", "separate", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(
            {"model": model, "task": task, "kwargs": {"n_mics": n_mics} if n_mics else {}}))
    monkeypatch.setattr(catalogue, "CATALOGUE_DIR", tmp_path)
    proc = AudioStream(torch.nn.Identity(), 16000, multichannel=True, n_mics=4)
    with pytest.raises(SignalError, match=r"such an array \(--mics\); or a shipped bundle for 8 "
                                          r"microphones: --model enh-a-8mic$"):
        proc.configure(16000, [f"mic{i}" for i in range(8)])
    with pytest.raises(SignalError, match=r"that form such an array \(--mics\)$"):
        proc.configure(16000, [f"mic{i}" for i in range(6)])
    # three of eight picked: the count is the picked one, the shipped hint the stream's
    picked = AudioStream(torch.nn.Identity(), 16000, multichannel=True, n_mics=4,
                         mics=[0, 2, 4])
    with pytest.raises(SignalError, match=r"^--mics picks 3 of the stream's 8 channels; .*"
                                          r"the 4 of your 8 .*--model enh-a-8mic$"):
        picked.configure(16000, [f"mic{i}" for i in range(8)])
