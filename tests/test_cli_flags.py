"""One concept, one flag: ``classify-iq`` and ``stream`` both take the hop in samples
(``--hop N``) or in seconds (``--hop-s S``), never both; ``export`` names its bundle with
``--model`` like every other file command; the two ``--nan-policy`` defaults differ on
purpose and their help says why. The old spellings keep their meaning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from repo_scripts import cli_json

from sigformer.cli import build_parser, main
from sigformer.data.sigmf_io import write_sigmf
from sigformer.rf.amr import classify_sigmf

L = 128  # frame length of the conftest bundles
RATE = 1e6  # the capture's core:sample_rate (and iq_bundle's input rate)


def _capture(folder: Path, n_frames: int = 12, sample_rate: float | None = RATE) -> Path:
    rng = np.random.default_rng(11)
    n = L * n_frames
    iq = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    return write_sigmf(folder / "cap", iq, sample_rate=sample_rate)


def _fsk_capture(folder: Path, sps: int = 32, n_frames: int = 48) -> Path:
    """2-FSK at ``sps`` samples per symbol (family bundles resample it to 8)."""
    rng = np.random.default_rng(0)
    n = L * n_frames
    bits = np.repeat(rng.choice([-1.0, 1.0], n // sps + 1), sps)[:n]
    iq = np.exp(2j * np.pi * np.cumsum(0.05 * bits)).astype(np.complex64)
    return write_sigmf(folder / "fsk", iq, sample_rate=RATE)


def _parser_of(command: str):
    return build_parser()._subparsers._group_actions[0].choices[command]


def _help(command: str, flag: str) -> str:
    return next(a.help for a in _parser_of(command)._actions if flag in a.option_strings)


# --- classify-iq --hop-s ------------------------------------------------------------------

def test_classify_iq_hop_s_gives_the_frames_of_the_equivalent_hop(tmp_path, iq_bundle,
                                                                   capsys):
    capture = _capture(tmp_path)
    base = ["classify-iq", str(capture), "--model", str(iq_bundle), "--all-frames"]
    in_samples = cli_json(capsys, [*base, "--hop", "64"])
    in_seconds = cli_json(capsys, [*base, "--hop-s", str(64 / RATE)])
    default = cli_json(capsys, base)
    assert in_seconds == in_samples
    assert in_samples["n_frames"] == 2 * 12 - 1 and default["n_frames"] == 12


def test_hop_s_counts_in_the_resampled_capture_of_a_family_bundle(tmp_path, family_bundle):
    # 32 samples per symbol resampled to 8: 256 us at 1 MHz is 256 capture samples, 64 framed
    from sigformer.bundle import Bundle

    bundle = Bundle.load(family_bundle)
    path = _fsk_capture(tmp_path)
    common = dict(target_sps=8.0, sps=32.0, min_power_db=None)
    in_samples = classify_sigmf(path, bundle, hop=64, **common)
    in_seconds = classify_sigmf(path, bundle, hop_s=256 / RATE, **common)
    assert in_samples["resample_factor"] == 0.25
    assert in_seconds["n_frames"] == in_samples["n_frames"] == 2 * 12 - 1
    np.testing.assert_array_equal(in_seconds["frames"]["start"],
                                  in_samples["frames"]["start"])
    np.testing.assert_array_equal(in_seconds["frames"]["probabilities"],
                                  in_samples["frames"]["probabilities"])


def test_classify_iq_hop_s_needs_the_capture_sample_rate(tmp_path, iq_bundle, capsys):
    capture = _capture(tmp_path, sample_rate=None)
    assert main(["classify-iq", str(capture), "--model", str(iq_bundle), "--hop-s",
                 "0.001"]) == 2
    err = capsys.readouterr().err
    assert "no core:sample_rate" in err and "--hop-s" in err and "--hop N" in err
    # the hop in samples needs no rate
    assert main(["classify-iq", str(capture), "--model", str(iq_bundle), "--hop", "64"]) == 0


@pytest.mark.parametrize("value", ["0", "-0.5", "nan", "soon"])
def test_classify_iq_hop_s_must_be_positive_seconds(value, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["classify-iq", "cap.sigmf-meta", "--model", "b", "--hop-s", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --hop-s: expected seconds, a number > 0" in err and repr(value) in err


def test_classify_sigmf_refuses_hop_and_hop_s_together():
    from torch import nn

    with pytest.raises(ValueError, match=r"give the frame hop once: hop=64 \(samples\) or "
                                         r"hop_s=0\.001 \(seconds\)"):
        classify_sigmf("cap.sigmf-meta", nn.Identity(), ["a"], hop=64, hop_s=0.001)


# --- stream --hop ---------------------------------------------------------------------------

def _streamed_annotations(capsys, argv: list[str], out: Path) -> tuple[dict, list]:
    report = cli_json(capsys, [*argv, "--out", str(out)])
    annotations = json.loads(out.read_text())["annotations"]
    return report, [(a["core:sample_start"], a["core:sample_count"], a["core:label"])
                    for a in annotations]


def test_stream_hop_gives_the_windows_of_the_equivalent_hop_s(tmp_path, iq_bundle, capsys):
    capture = _capture(tmp_path)
    base = ["stream", str(iq_bundle), "--source", f"sigmf:{capture}"]
    samples, by_samples = _streamed_annotations(capsys, [*base, "--hop", "64"],
                                                tmp_path / "a.sigmf-meta")
    seconds, by_seconds = _streamed_annotations(capsys, [*base, "--hop-s", str(64 / RATE)],
                                                tmp_path / "b.sigmf-meta")
    default = cli_json(capsys, base)
    assert by_samples == by_seconds and by_samples
    assert samples["predictions"] == seconds["predictions"] == 2 * 12 - 1
    assert samples["label_counts"] == seconds["label_counts"]
    assert default["predictions"] == 12


def test_stream_hop_over_a_pipeline_yaml(tmp_path, iq_bundle, capsys):
    import yaml

    capture = _capture(tmp_path)
    pipeline = tmp_path / "stream.yaml"
    pipeline.write_text(yaml.safe_dump({"task": "classify", "stream": {
        "hop_s": 0.5,  # 500,000 samples: overridden by the flag
        "output": {"lsl_name": None},
        "source": {"kind": "sigmf", "path": str(capture), "realtime": False}}}))
    report = cli_json(capsys, ["stream", str(pipeline), "--model", str(iq_bundle),
                               "--hop", "32"])
    assert report["predictions"] == (12 * L - L) // 32 + 1


def test_stream_counts_seconds_at_the_source_rate_for_a_rate_agnostic_bundle(
        tmp_path, family_bundle, capsys):
    """Its recorded rate is a nominal 1 Hz (--hop-s 0.001 once became a hop of 1 sample, then
    was refused): seconds now count at the capture's rate times the resampling to the
    bundle's symbol length, as classify-iq --hop-s counts them; without a known rate they are
    refused, naming --source-rate and --hop."""
    capture = _capture(tmp_path)
    for sps, hop in ((8, 64), (16, 32)):  # --sps 16 -> 8: half the samples, half the hop
        base = ["stream", str(family_bundle), "--source", f"sigmf:{capture}", "--sps",
                str(sps), "--decision", "frame"]
        by_seconds = cli_json(capsys, [*base, "--hop-s", repr(64 / RATE)])
        by_samples = cli_json(capsys, [*base, "--hop", str(hop)])
        assert by_seconds["predictions"] == by_samples["predictions"], sps
    assert by_samples["predictions"] == (12 * L // 2 - L) // 32 + 1
    unknown = _capture(tmp_path / "norate", sample_rate=None)
    assert main(["stream", str(family_bundle), "--source", f"sigmf:{unknown}", "--sps", "8",
                 "--hop-s", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "rate-agnostic" in err and "--source-rate" in err and "--hop N" in err


def test_online_settings_take_one_hop_unit(family_bundle):
    from sigformer.bundle import Bundle
    from sigformer.streaming.app import OnlineSettings, PipelineConfigError, build_online

    bundle = Bundle.load(family_bundle)
    online = build_online(bundle, OnlineSettings(hop=32, samples_per_symbol=8.0))
    assert online.windows.hop == 32
    with pytest.raises(PipelineConfigError, match="not both"):
        build_online(bundle, OnlineSettings(hop=32, hop_s=0.5, samples_per_symbol=8.0))


@pytest.mark.parametrize("command", ["classify-iq", "stream"])
def test_hop_and_hop_s_are_mutually_exclusive(command, capsys):
    argv = {"classify-iq": ["classify-iq", "cap.sigmf-meta", "--model", "b"],
            "stream": ["stream", "b", "--source", "sigmf:cap.sigmf-meta"]}[command]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--hop", "64", "--hop-s", "0.001"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --hop-s: not allowed with argument --hop" in err
    # each alone parses, with its own meaning
    args = build_parser().parse_args([*argv, "--hop", "64"])
    assert (args.hop, args.hop_s) == (64, None)
    args = build_parser().parse_args([*argv, "--hop-s", "0.001"])
    assert (args.hop, args.hop_s) == (None, 0.001)


# --- export --model -------------------------------------------------------------------------

def test_export_takes_the_bundle_as_model_too(tmp_path, iq_bundle, capsys):
    reports = {}
    for how, argv in {"positional": [str(iq_bundle)], "model": ["--model", str(iq_bundle)]
                      }.items():
        out = tmp_path / how
        assert main(["export", *argv, "--out", str(out), "--format", "torchscript"]) == 0
        # the same report but for the output folder it names
        reports[how] = json.loads(capsys.readouterr().out.replace(str(out), "OUT"))
        assert (out / "model.pt").is_file()
    assert reports["model"] == reports["positional"]
    assert reports["model"]["files"] == ["OUT/model.pt", "OUT/preprocess.json"]


@pytest.mark.parametrize("argv, message", [
    ([], "the bundle to export is missing: give it as BUNDLE"),
    (["a", "--model", "b"], "give the bundle to export once, as BUNDLE or with --model, "
                            "not both (got 'a' and --model 'b')"),
])
def test_export_needs_exactly_one_bundle(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["export", *argv, "--out", str(tmp_path / "o")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: sigformer export")  # the command's usage, not the top level
    assert not (tmp_path / "o").exists()


# --- the two --nan-policy defaults ----------------------------------------------------------

def test_nan_policy_helps_say_why_the_defaults_differ():
    offline, live = _help("classify-iq", "--nan-policy"), _help("stream", "--nan-policy")
    # the defaults themselves are unchanged: refuse a file, skip in a stream
    from sigformer.streaming.app import OnlineSettings

    assert build_parser().parse_args(["classify-iq", "f", "--model", "b"]).nan_policy == "raise"
    assert build_parser().parse_args(["stream", "b"]).nan_policy is None
    assert OnlineSettings().nan_policy == "skip"
    assert "refuse (default: a file can be cleaned and run again" in offline
    assert "stream skips by default" in offline
    assert "default: skip their windows: a live stream cannot stop" in live
    assert "classify-iq refuses by default" in live


# --- values refused before anything streams -------------------------------------------------

@pytest.mark.parametrize("flag, value", [("--hop-s", "-1"), ("--hop-s", "0"),
                                         ("--hop-s", "nan"), ("--sps", "0"), ("--sps", "nan"),
                                         ("--sps", "inf")])
def test_stream_refuses_bad_hop_s_and_sps_like_classify_iq(flag, value, capsys):
    """They were taken as floats: --hop-s -1 streamed with a hop of one sample, nan crashed."""
    with pytest.raises(SystemExit) as exited:
        main(["stream", "b", "--source", "sigmf:cap.sigmf-meta", f"{flag}={value}"])
    assert exited.value.code == 2
    assert f"argument {flag}: expected" in capsys.readouterr().err


def test_stream_sps_on_a_bundle_without_target_is_a_clean_error(tmp_path, iq_bundle, capsys):
    capture = _capture(tmp_path)
    assert main(["stream", str(iq_bundle), "--source", f"sigmf:{capture}", "--sps", "8"]) == 2
    err = capsys.readouterr().err
    assert "--sps" in err and "extra['target_sps']" in err and "Traceback" not in err


def test_online_settings_refuse_a_hop_s_that_is_not_positive(iq_bundle):
    from sigformer.bundle import Bundle
    from sigformer.streaming.app import OnlineSettings, PipelineConfigError, build_online

    bundle = Bundle.load(iq_bundle)
    for bad in (-1.0, 0.0, float("nan")):
        with pytest.raises(PipelineConfigError, match="hop_s must be a number of seconds > 0"):
            build_online(bundle, OnlineSettings(hop_s=bad))


@pytest.mark.parametrize("value", ["0", "-8"])
def test_classify_iq_refuses_a_target_sps_that_is_not_positive(value, capsys):
    """--target-sps 0 was read as 'not given' and the bundle's value used instead."""
    with pytest.raises(SystemExit) as exited:
        main(["classify-iq", "cap.sigmf-meta", "--model", "b", f"--target-sps={value}"])
    assert exited.value.code == 2
    assert "argument --target-sps: expected samples per symbol" in capsys.readouterr().err


def test_a_pipeline_stream_section_takes_one_hop_unit():
    from pydantic import ValidationError

    from sigformer.tasks.config import StreamConfig

    with pytest.raises(ValidationError, match="stream.hop .* or stream.hop_s .* not both"):
        StreamConfig(hop=32, hop_s=0.5)
    assert StreamConfig(hop=32).hop == 32 and StreamConfig(hop_s=0.5).hop_s == 0.5
