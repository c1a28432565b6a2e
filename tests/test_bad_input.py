"""Every bad input gets an error that names the problem and the expectation."""

import numpy as np
import pytest

from sigformer import SignalError
from sigformer.estimators import SignalClassifier
from sigformer.models import UnknownModelError


@pytest.fixture(scope="module")
def fitted(mi_epochs):
    clf = SignalClassifier(model="dbconformer", max_epochs=1,
                           model_params=dict(emb_size=8, num_heads=2, depth=1, spa_dim=4,
                                             patch_size=25))
    return clf.fit(mi_epochs)


def test_wrong_channel_count(fitted, mi_epochs):
    with pytest.raises(SignalError, match=r"fitted on trials of 22 channels x 200 samples, got "
                                          r"21 x 200"):
        fitted.predict(mi_epochs.data[:, :21])


def test_wrong_channel_set(fitted, mi_epochs):
    other = mi_epochs[np.arange(4)]
    from sigformer import ChannelSet

    other.channels = ChannelSet(tuple(reversed(mi_epochs.channels.names)))
    with pytest.raises(SignalError, match="channels differ from those seen in fit"):
        fitted.predict(other)


def test_wrong_sampling_rate(fitted, mi_epochs):
    other = mi_epochs[np.arange(4)]
    other.sfreq = 250.0
    with pytest.raises(SignalError, match="sampling rate 250 Hz differs from the 100 Hz"):
        fitted.predict(other)


@pytest.mark.parametrize("value,word", [(np.nan, "1 NaN and 0 Inf"), (np.inf, "0 NaN and 1 Inf")])
def test_non_finite(fitted, mi_epochs, value, word):
    X = mi_epochs.data.copy()
    X[3, 2, 10] = value
    with pytest.raises(SignalError, match=rf"{word} values \(first at index \(3, 2, 10\)\)"):
        fitted.predict(X)
    with pytest.raises(SignalError, match=word):
        SignalClassifier(max_epochs=1).fit(X, mi_epochs.labels)


def test_mismatched_labels_empty_and_single_class(mi_epochs):
    clf = SignalClassifier(max_epochs=1)
    with pytest.raises(SignalError, match="X has 60 trials but y has 59 labels"):
        clf.fit(mi_epochs.data, mi_epochs.labels[:-1])
    with pytest.raises(SignalError, match="0 sample"):
        clf.fit(np.zeros((0, 10)), [])
    with pytest.raises(SignalError, match="empty"):
        clf.fit(np.zeros((0, 3, 10)), [])
    with pytest.raises(SignalError, match="y has 1 class"):
        clf.fit(mi_epochs.data, np.zeros(len(mi_epochs)))


def test_unknown_model_name(mi_epochs):
    with pytest.raises(UnknownModelError, match="unknown model 'eegnet'"):
        SignalClassifier(model="eegnet").fit(mi_epochs)


def test_model_too_short_for_input(mi_epochs):
    # DBConformer's reference patch (125 samples) does not fit 2 s at 100 Hz... it does (200);
    # 1 s at 100 Hz does not:
    with pytest.raises(ValueError, match=r"n_times=100 is shorter than one patch \(patch_size=125"):
        SignalClassifier(max_epochs=1).fit(mi_epochs.data[:, :, :100], mi_epochs.labels)
