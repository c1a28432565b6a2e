import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sigformer.estimators import SignalClassifier
from sigformer.stages import EuclideanAlignment

EXPECTED_FAILED_CHECKS = {
    "check_classifiers_train": "sklearn's toy blobs must reach 83% accuracy; a transformer "
                               "trained for the checks' single epoch does not",
    "check_fit2d_1feature": "one time sample cannot fill a DBConformer temporal patch; the "
                            "error names n_times and the patch size instead",
}


def _check_estimator():
    return SignalClassifier(
        model="dbconformer", max_epochs=1, batch_size=8,
        model_params=dict(emb_size=8, num_heads=2, depth=1, spa_dim=4, patch_size=1,
                          kernel_size=3))


@parametrize_with_checks([_check_estimator()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture()
def clf(tiny_dbconformer_params):
    return SignalClassifier(model="dbconformer", model_params=tiny_dbconformer_params,
                            max_epochs=25, lr=3e-3, batch_size=16)


def test_fit_predict_score_on_simulated_mi(clf, mi_epochs):
    X, y = mi_epochs.data, np.asarray(["left", "right"])[mi_epochs.labels]
    clf.fit(X[:40], y[:40])
    assert list(clf.classes_) == ["left", "right"]
    assert clf.n_chans_ == 22 and clf.n_times_ == mi_epochs.n_times
    proba = clf.predict_proba(X[40:])
    assert proba.shape == (len(X) - 40, 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert set(clf.predict(X[40:])) <= {"left", "right"}
    assert clf.score(X[40:], y[40:]) >= 0.7  # lateralised ERD at 0 dB is easy to learn


def test_accepts_sigformer_and_mne_epochs(clf, mi_epochs):
    clf.set_params(max_epochs=1)
    clf.fit(mi_epochs)  # labels come with the epochs
    assert clf.ch_names_ == list(mi_epochs.channels) and clf.sfreq_ == mi_epochs.sfreq
    assert clf.predict(mi_epochs).shape == (len(mi_epochs),)
    volts = mi_epochs[np.arange(len(mi_epochs))]
    volts.data = volts.data * 1e-6
    mne_epochs = volts.to_mne()
    proba_mne = clf.predict_proba(mne_epochs)  # mne.Epochs are read in microvolts
    np.testing.assert_allclose(proba_mne, clf.predict_proba(mi_epochs), atol=1e-5)


def test_clone_params_pipeline_and_search(clf, mi_epochs):
    X, y = mi_epochs.data, mi_epochs.labels
    clf.set_params(max_epochs=1)
    cloned = clone(clf)
    assert cloned.get_params() == clf.get_params() and not hasattr(cloned, "module_")
    pipe = make_pipeline(EuclideanAlignment(), clf)
    scores = cross_val_score(pipe, X, y, cv=2)
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
    search = GridSearchCV(clf, {"lr": [1e-3, 3e-3]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in (1e-3, 3e-3)
    assert len(search.cv_results_["mean_test_score"]) == 2


@pytest.mark.parametrize("model", ["dbconformer", "braindecode.EEGNet"])
def test_pickle_joblib_and_checkpoint_round_trips(tmp_path, mi_epochs, tiny_dbconformer_params,
                                                   model):
    params = tiny_dbconformer_params if model == "dbconformer" else {}
    clf = SignalClassifier(model=model, model_params=params, max_epochs=2)
    clf.fit(mi_epochs.data, mi_epochs.labels)
    expected = clf.predict_proba(mi_epochs.data)
    # EEGNet's parametrized weights cannot be pickled as modules; the estimator still pickles
    from_pickle = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(from_pickle.predict_proba(mi_epochs.data), expected)
    joblib.dump(clf, tmp_path / "clf.joblib")
    from_joblib = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(from_joblib.predict_proba(mi_epochs.data), expected)
    clf.save(tmp_path / "ckpt")
    loaded = SignalClassifier.load(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.predict_proba(mi_epochs.data), expected)
    assert loaded.get_params() == clf.get_params()


def test_fit_is_reproducible_with_random_state(clf, mi_epochs):
    clf.set_params(max_epochs=2)
    a = clone(clf).fit(mi_epochs.data, mi_epochs.labels).predict_proba(mi_epochs.data)
    b = clone(clf).fit(mi_epochs.data, mi_epochs.labels).predict_proba(mi_epochs.data)
    np.testing.assert_allclose(a, b, atol=1e-6)
