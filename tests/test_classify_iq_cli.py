"""``--min-power-db`` means the same in ``classify-iq`` and ``sigformer stream``: how many dB
below the loudest frame a frame counts as quiet, a number >= 0. A negative value is refused
by both, with an error naming the option (classify-iq used to take its absolute value while
the stream refused it)."""

from __future__ import annotations

import pytest
from torch import nn

from sigformer.cli import build_parser, main
from sigformer.rf.amr import classify_sigmf

COMMANDS = {"classify-iq": ["classify-iq", "capture.sigmf-meta", "--model", "bundle"],
            "stream": ["stream", "bundle", "--source", "sigmf:capture.sigmf-meta"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", ["-30", "-0.5", "nan", "inf", "loud"])
def test_a_negative_or_non_finite_min_power_db_is_refused(command, value, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*COMMANDS[command], "--min-power-db", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"sigformer {command}: error: argument --min-power-db:" in err
    assert "dB below the loudest frame" in err and ">= 0" in err and repr(value) in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_zero_and_positive_levels_are_taken_as_given(command):
    parser = build_parser()
    for text, value in [("0", 0.0), ("30", 30.0), ("12.5", 12.5)]:
        assert parser.parse_args([*COMMANDS[command], "--min-power-db", text]
                                 ).min_power_db == value


def test_classify_sigmf_refuses_a_negative_level_too():
    # the library no longer leaves it to frame_signal, which takes the absolute value
    with pytest.raises(ValueError, match=r"min_power_db must be a level in dB below the "
                                         r"loudest frame \(>= 0\)"):
        classify_sigmf("capture.sigmf-meta", nn.Identity(), ["a"], min_power_db=-30.0)


# --- NaN samples and checksums with a resampling (family) bundle --------------------------

L = 128


@pytest.fixture(scope="module")
def family_bundle(tmp_path_factory):
    """A rate-agnostic bundle trained at 8 samples per symbol: classify-iq always resamples."""
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    spec = SignalSpec.iq(1.0, L)
    return Bundle(model=create_model("kd_cnn", n_outputs=2).eval(), task="classify",
                  input_spec=spec, model_spec=spec, labels=["ASK", "FSK"],
                  extra={"normalization": "rms", "rate_agnostic": True, "target_sps": 8.0,
                         "decision": "frame"}
                  ).save(tmp_path_factory.mktemp("fam") / "b")


def _fsk_capture(tmp_path, nan_at: slice | None = None):
    """2-FSK at 32 samples per symbol (classify-iq resamples it by 1/4), 96 frames long,
    written without core:sha512 (NaN samples cannot be written by write_sigmf)."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    n = L * 96
    bits = np.repeat(rng.choice([-1.0, 1.0], n // 32 + 1), 32)[:n]
    noise = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    iq = (np.exp(2j * np.pi * np.cumsum(0.05 * bits)) + 0.01 * noise).astype(np.complex64)
    if nan_at is not None:
        iq[nan_at] = np.nan
    iq.tofile(tmp_path / "cap.sigmf-data")
    meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": 1e6,
                       "core:version": "1.0.0"},
            "captures": [{"core:sample_start": 0}], "annotations": []}
    (tmp_path / "cap.sigmf-meta").write_text(json.dumps(meta))
    return tmp_path / "cap.sigmf-meta"


def test_skip_drops_the_frames_the_resampler_carries_nan_samples_into(tmp_path, family_bundle):
    """NaN at original samples 5118-5119: at 1/4 rate that is conditioned sample 1279, the
    last of frame 9; the resampling filter spreads it into frame 10 too. Both frames are
    dropped (the frame holding the mapped sample alone would leave a contaminated one); every
    other frame is exactly what interpolating the capture gives."""
    import numpy as np

    from sigformer.bundle import Bundle

    bundle = Bundle.load(family_bundle)
    path = _fsk_capture(tmp_path, slice(5118, 5120))
    common = dict(normalization="rms", target_sps=8.0, min_power_db=None)
    with pytest.warns(UserWarning, match=r"skipped 2 of 24 frames"):
        skip = classify_sigmf(path, bundle.model, bundle.labels, nan_policy="skip", **common)
    fill = classify_sigmf(path, bundle.model, bundle.labels, nan_policy="interpolate",
                          **common)
    assert skip["resample_factor"] == 0.25 and fill["n_frames"] == 24
    kept, every = skip["frames"]["start"], fill["frames"]["start"]
    assert sorted(set(every) - set(kept)) == [9 * L * 4, 10 * L * 4]
    same = np.isin(every, kept)
    np.testing.assert_array_equal(skip["frames"]["probabilities"],
                                  fill["frames"]["probabilities"][same])


def test_classify_iq_nan_policy_skip_runs_with_a_resampling_bundle(tmp_path, family_bundle,
                                                                   capsys):
    from repo_scripts import cli_json

    path = _fsk_capture(tmp_path, slice(5118, 5120))
    report = cli_json(capsys, ["classify-iq", str(path), "--model", str(family_bundle),
                               "--nan-policy", "skip", "--all-frames"])
    assert report["n_frames"] == 22 and report["resample_factor"] == 0.25
    # the default policy refuses, naming the command line's flag (not only the Python name)
    assert main(["classify-iq", str(path), "--model", str(family_bundle)]) == 2
    err = capsys.readouterr().err
    assert "2 NaN/Inf sample value(s), the first at sample 5118" in err
    assert "--nan-policy skip" in err


def test_a_checksum_mismatch_names_the_flag_that_reads_it_anyway(tmp_path, family_bundle,
                                                                 capsys):
    import numpy as np

    from sigformer.data.sigmf_io import read_sigmf, write_sigmf

    clean = read_sigmf(_fsk_capture(tmp_path)).samples
    path = write_sigmf(tmp_path / "signed", clean, sample_rate=1e6)  # with core:sha512
    data = tmp_path / "signed.sigmf-data"
    raw = np.fromfile(data, np.complex64)
    raw[7] *= -1  # a changed sample: the SHA-512 no longer matches
    raw.tofile(data)
    assert main(["classify-iq", str(path), "--model", str(family_bundle)]) == 2
    err = capsys.readouterr().err
    assert "SHA-512 of the data does not match" in err and "--no-verify-checksum" in err
    assert main(["classify-iq", str(path), "--model", str(family_bundle),
                 "--no-verify-checksum"]) == 0


@pytest.mark.parametrize("value", ["-5", "0", "1.5", "many"])
def test_hop_must_be_a_positive_whole_number(value, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*COMMANDS["classify-iq"], "--hop", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --hop: expected a whole number of samples >= 1" in err and repr(value) in err
    assert build_parser().parse_args([*COMMANDS["classify-iq"], "--hop", "64"]).hop == 64


# --- --sps: the capture's known samples per symbol (as stream --sps) ----------------------

@pytest.fixture()
def no_estimate(monkeypatch):
    """Blind symbol-length estimation fails the test if it runs (``--sps`` states it)."""
    import sigformer.rf.amr as amr

    def refuse(*args, **kwargs):
        raise AssertionError("estimate_samples_per_symbol ran although sps was given")

    monkeypatch.setattr(amr, "estimate_samples_per_symbol", refuse)


def test_sps_skips_the_blind_estimate_and_is_reported_as_given(tmp_path, family_bundle,
                                                               no_estimate, capsys):
    from fractions import Fraction

    from repo_scripts import cli_json

    path = _fsk_capture(tmp_path)
    report = cli_json(capsys, ["classify-iq", str(path), "--model", str(family_bundle),
                               "--sps", "32", "--all-frames"])
    assert report["samples_per_symbol"] == 32.0 and report["resample_factor"] == 0.25
    assert report["n_frames"] == 24  # 96 frames of 128 samples at a quarter of the rate
    # a value the estimate's 3-decimal rounding would change comes back unchanged
    report = cli_json(capsys, ["classify-iq", str(path), "--model", str(family_bundle),
                               "--sps", "31.41592", "--all-frames"])
    ratio = Fraction(8 / 31.41592).limit_denominator(256)
    assert report["samples_per_symbol"] == 31.41592
    assert report["resample_factor"] == ratio.numerator / ratio.denominator


def test_sps_gives_the_frames_an_estimate_of_the_same_value_gives(tmp_path, family_bundle,
                                                                  monkeypatch):
    import numpy as np

    import sigformer.rf.amr as amr
    from sigformer.bundle import Bundle

    bundle = Bundle.load(family_bundle)
    path = _fsk_capture(tmp_path)
    common = dict(normalization="rms", target_sps=8.0, min_power_db=None)
    estimated = classify_sigmf(path, bundle.model, bundle.labels, **common)
    assert estimated["samples_per_symbol"] is not None  # the blind path really estimated
    monkeypatch.setattr(amr, "estimate_samples_per_symbol",
                        lambda *a, **k: pytest.fail("estimated although sps was given"))
    stated = classify_sigmf(path, bundle.model, bundle.labels,
                            sps=estimated["samples_per_symbol"], **common)
    assert stated["resample_factor"] == estimated["resample_factor"]
    np.testing.assert_array_equal(stated["frames"]["start"], estimated["frames"]["start"])
    np.testing.assert_array_equal(stated["frames"]["probabilities"],
                                  estimated["frames"]["probabilities"])


def test_sps_with_nan_skip_uses_the_given_value_and_drops_the_same_frames(
        tmp_path, family_bundle, no_estimate):
    from sigformer.bundle import Bundle

    bundle = Bundle.load(family_bundle)
    path = _fsk_capture(tmp_path, slice(5118, 5120))
    with pytest.warns(UserWarning, match=r"skipped 2 of 24 frames"):
        skip = classify_sigmf(path, bundle.model, bundle.labels, normalization="rms",
                              target_sps=8.0, sps=32.0, min_power_db=None, nan_policy="skip")
    assert skip["samples_per_symbol"] == 32.0 and skip["resample_factor"] == 0.25
    assert 9 * L * 4 not in skip["frames"]["start"] and 10 * L * 4 not in skip["frames"]["start"]


def test_sps_without_a_target_is_refused_naming_both_flags(tmp_path, iq_bundle, capsys):
    from repo_scripts import cli_json

    path = _fsk_capture(tmp_path)
    assert main(["classify-iq", str(path), "--model", str(iq_bundle), "--sps", "32"]) == 2
    err = capsys.readouterr().err
    assert "--sps 32" in err and "--target-sps" in err and "extra['target_sps']" in err
    # with a target the same bundle resamples by target / sps
    report = cli_json(capsys, ["classify-iq", str(path), "--model", str(iq_bundle), "--sps",
                               "32", "--target-sps", "16", "--all-frames"])
    assert report["samples_per_symbol"] == 32.0 and report["resample_factor"] == 0.5
    # the library says the same without the command line
    from sigformer.bundle import Bundle

    bundle = Bundle.load(iq_bundle)
    with pytest.raises(ValueError, match=r"sps=32 .* give target_sps \(--target-sps\)"):
        classify_sigmf(path, bundle, sps=32.0)


@pytest.mark.parametrize("value", ["0", "-8", "nan", "inf", "fast"])
def test_sps_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*COMMANDS["classify-iq"], "--sps", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --sps: expected samples per symbol, a number > 0" in err
    assert repr(value) in err
