import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigformer.augment import (
    AmplitudeScale,
    ChannelDropout,
    FrequencyShift,
    GaussianNoise,
    RandomCrop,
    SegmentRecombination,
    TimeShift,
    build_augmentations,
    to_specs,
)


def _batch(n=16, c=3, t=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, c, t, generator=g)
    y = torch.arange(n) % 2
    return X, y


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


PER_TRIAL = [TimeShift(0.2, p=1.0), RandomCrop(0.2, p=1.0), AmplitudeScale((0.5, 2.0), p=1.0),
             GaussianNoise(0.2, p=1.0), ChannelDropout(0.5, p=1.0),
             FrequencyShift(sfreq=100.0, max_shift_hz=3.0, p=1.0)]


@pytest.mark.parametrize("aug", PER_TRIAL, ids=lambda a: a.name)
def test_per_trial_augmentations_keep_shape_and_labels_and_change_data(aug):
    X, y = _batch()
    out, out_y = aug(X, y, _gen())
    assert out.shape == X.shape and out.dtype == X.dtype
    assert torch.equal(out_y, y)
    assert not torch.allclose(out, X)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("aug", PER_TRIAL, ids=lambda a: a.name)
def test_probability_zero_is_the_identity(aug):
    spec = {k: v for k, v in aug.to_spec().items() if k != "name"}
    spec["p"] = 0.0
    X, y = _batch()
    out, _ = type(aug)(**spec)(X, y, _gen())
    torch.testing.assert_close(out, X)


@given(seed=st.integers(0, 2**16), low=st.floats(0.1, 1.0), width=st.floats(0.0, 2.0))
@settings(max_examples=25, deadline=None)
def test_amplitude_scale_multiplies_each_trial_by_a_factor_in_range(seed, low, width):
    X, y = _batch(seed=seed)
    out, _ = AmplitudeScale((low, low + width), p=1.0)(X, y, _gen(seed))
    factors = (out / X).reshape(len(X), -1)
    # one factor per trial, inside the range
    torch.testing.assert_close(factors, factors[:, :1].expand_as(factors), rtol=1e-4, atol=1e-4)
    assert (factors[:, 0] >= low - 1e-5).all() and (factors[:, 0] <= low + width + 1e-5).all()


@given(seed=st.integers(0, 2**16), max_shift=st.floats(0.01, 0.5))
@settings(max_examples=25, deadline=None)
def test_time_shift_moves_each_trial_without_changing_it(seed, max_shift):
    X, y = _batch(n=4, seed=seed)
    out, _ = TimeShift(max_shift, p=1.0)(X, y, _gen(seed))
    n = X.shape[-1]
    for i in range(len(X)):
        matches = [s for s in range(-int(max_shift * n), int(max_shift * n) + 1)
                   if torch.equal(out[i, :, max(s, 0):n + min(s, 0)],
                                  X[i, :, max(-s, 0):n - max(s, 0)])]
        assert matches, "the shifted trial is not a shifted copy of the original"


def test_gaussian_noise_is_relative_to_each_trial():
    X, y = _batch(n=64, t=2000)
    X[32:] *= 1e-5  # volts next to standardised data
    out, _ = GaussianNoise(0.1, p=1.0)(X, y, _gen())
    ratio = (out - X).std(dim=(1, 2)) / X.std(dim=(1, 2))
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.1), rtol=0.05, atol=0)


def test_channel_dropout_zeros_whole_channels():
    X, y = _batch(n=32, c=8)
    out, _ = ChannelDropout(p_drop=0.5, p=1.0)(X, y, _gen())
    zero = (out == 0).all(-1)
    kept = (out == X).all(-1)
    assert (zero | kept).all()
    assert 0.3 < zero.float().mean() < 0.7


def test_frequency_shift_moves_the_spectral_peak():
    sfreq, n = 100.0, 400
    t = torch.arange(n) / sfreq
    X = torch.sin(2 * np.pi * 10 * t).repeat(8, 1, 1)
    y = torch.zeros(8, dtype=torch.long)
    out, _ = FrequencyShift(sfreq=sfreq, max_shift_hz=3.0, p=1.0)(X, y, _gen(1))
    freqs = np.fft.rfftfreq(n, 1 / sfreq)
    peaks = freqs[np.abs(np.fft.rfft(out[:, 0].numpy(), axis=-1)).argmax(-1)]
    assert ((peaks >= 6.75) & (peaks <= 13.25)).all()
    assert np.abs(peaks - 10).max() > 0.5


@given(n_segments=st.integers(1, 10), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_segment_recombination_stitches_same_class_segments_in_place(n_segments, seed):
    X, y = _batch(n=12, t=100, seed=seed)
    aug = SegmentRecombination(n_segments=n_segments)
    aug.prepare(X.numpy(), y.numpy())
    out, out_y = aug(X[:6], y[:6], _gen(seed))
    assert len(out) == 12 and torch.equal(out[:6], X[:6])  # real trials kept, new appended
    assert torch.equal(out_y[6:].sort().values, y[:6].sort().values)
    edges = np.linspace(0, 100, n_segments + 1).astype(int)
    for trial, label in zip(out[6:], out_y[6:]):
        pool = X[y == label]
        for a, b in zip(edges[:-1], edges[1:]):
            # every segment is the same segment of some training trial of the same class
            assert any(torch.equal(trial[:, a:b], p[:, a:b]) for p in pool)


def test_segment_recombination_without_prepare_uses_the_batch():
    X, y = _batch(n=8, t=64)
    out, out_y = SegmentRecombination(n_segments=4, ratio=0.5)(X, y, _gen())
    assert len(out) == 12 and (np.bincount(out_y.numpy()) == [6, 6]).all()


def test_build_and_round_trip_specs():
    augs = build_augmentations(["gaussian_noise", {"name": "frequency_shift", "max_shift_hz": 1},
                                AmplitudeScale((0.9, 1.1))], sfreq=250.0)
    assert [a.name for a in augs] == ["gaussian_noise", "frequency_shift", "amplitude_scale"]
    assert augs[1].sfreq == 250.0
    specs = to_specs(augs)
    assert specs[2] == {"name": "amplitude_scale", "scale": [0.9, 1.1], "p": 0.5}
    rebuilt = build_augmentations(specs)
    assert [a.to_spec() for a in rebuilt] == [a.to_spec() for a in augs]
    assert build_augmentations(None) == [] and to_specs(None) is None


@pytest.mark.parametrize("spec, error, match", [
    ("mixup", ValueError, "unknown augmentation 'mixup'"),
    ({"name": "gaussian_noise", "sigma": 1}, ValueError, r"no parameter\(s\) \['sigma'\]"),
    ("frequency_shift", ValueError, "FrequencyShift needs the sampling rate"),
    ({"name": "time_shift", "p": 2}, ValueError, r"p is a probability in \[0, 1\]"),
    ({"name": "segment_recombination", "n_segments": 0}, ValueError, "n_segments must be >= 1"),
    (3, TypeError, "an augmentation is an Augmentation object"),
])
def test_bad_augmentation_specs_are_refused(spec, error, match):
    with pytest.raises(error, match=match):
        build_augmentations([spec])
