import pickle

import joblib
import numpy as np
import pytest
import torch
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
    # sklearn asks rtol 1e-7 of float32 outputs; batches of 8 regroup with the order and some
    # CPUs' float32 kernels round a regrouped row differently (3e-8 measured on an AVX-512
    # FP16 machine). test_decision_function_is_sample_order_invariant checks it at float32
    # precision instead
    "check_methods_sample_order_invariance": "float32 rounding of regrouped batches exceeds "
                                             "sklearn's rtol 1e-7 on some CPUs",
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
    volts.data, volts.unit = volts.data * 1e-6, "V"
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


# --- argument validation (issue 17) -----------------------------------------------------

class _NeverRead:
    """Stands for data that must not be touched: any access fails the test."""

    def __array__(self, *args, **kwargs):
        raise AssertionError("the data was read before the arguments were checked")


@pytest.mark.parametrize("params, match", [
    (dict(max_epochs=0), "max_epochs must be an integer >= 1, got 0"),
    (dict(max_epochs=-1), "max_epochs must be an integer >= 1, got -1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(lr=-1e-3), "lr must be a number"),
    (dict(validation_split=1.0), r"validation_split must be a fraction in \[0, 1\)"),
    (dict(validation_split=-0.2), "validation_split must be a fraction"),
    (dict(early_stopping_patience=5), "early_stopping_patience needs validation data: set "
                                      "validation_split"),
    (dict(lr_schedule="linear"), "lr_schedule must be one of"),
    (dict(label_smoothing=2.0), "label_smoothing must be a number"),
    (dict(augmentation="cutout"), "unknown augmentation 'cutout'"),
    (dict(class_weight="auto"), "class_weight must be None, 'balanced' or a dict"),
])
def test_settings_that_cannot_work_are_refused_before_data_loads(params, match):
    with pytest.raises(ValueError, match=match):
        SignalClassifier(**params).fit(_NeverRead(), _NeverRead())


def test_validation_split_too_small_for_the_classes_is_refused(mi_epochs,
                                                               tiny_dbconformer_params):
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1,
                           validation_split=0.01)
    with pytest.raises(ValueError, match=r"validation_split=0.01 cannot work with 60 trials "
                                         r"of 2 classes"):
        clf.fit(mi_epochs.data, mi_epochs.labels)


def test_braindecode_name_without_prefix_gets_a_hint():
    from sigformer.models.registry import UnknownModelError

    with pytest.raises(UnknownModelError, match="did you mean 'braindecode.EEGNet'"):
        SignalClassifier(model="EEGNet").fit(_NeverRead(), _NeverRead())
    with pytest.raises(UnknownModelError, match="did you mean 'braindecode.ShallowFBCSPNet'"):
        SignalClassifier(model="shallowfbcspnet").fit(_NeverRead(), _NeverRead())


def test_non_finite_outputs_are_an_error_not_a_label(mi_epochs, tiny_dbconformer_params):
    import torch

    from sigformer import SignalError

    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1)
    clf.fit(mi_epochs.data, mi_epochs.labels)
    with torch.no_grad():
        next(clf.module_.final_layer.parameters()).fill_(float("nan"))  # corrupted weights
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(SignalError, match=r"non-finite outputs \(NaN/Inf\) for 60 of 60"):
            method(mi_epochs.data)


def test_scale_mismatch_warns_at_predict(tmp_path, mi_epochs, tiny_dbconformer_params):
    import warnings

    from sigformer.estimators import ScaleWarning

    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1)
    clf.fit(mi_epochs.data, mi_epochs.labels)  # microvolts
    assert 0.1 < clf.input_scale_ < 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScaleWarning)
        clf.predict(mi_epochs.data * 3)  # another subject's amplitude: no warning
    with pytest.warns(ScaleWarning, match=r"volts vs microvolts"):
        clf.predict(mi_epochs.data * 1e-6)  # the same trials in volts
    clf.save(tmp_path / "ckpt")
    loaded = SignalClassifier.load(tmp_path / "ckpt")
    assert loaded.input_scale_ == pytest.approx(clf.input_scale_)
    with pytest.warns(ScaleWarning):
        loaded.predict_proba(mi_epochs.data * 1e-6)


# --- recipe options (issue 15) ----------------------------------------------------------

def test_validation_split_early_stopping_and_best_epoch(mi_epochs, tiny_dbconformer_params):
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=30, lr=0.05,
                           optimizer="sgd", validation_split=0.25, early_stopping_patience=2,
                           lr_schedule="cosine", label_smoothing=0.1)
    clf.fit(mi_epochs.data, mi_epochs.labels)
    epochs = clf.history_.epochs
    assert len(epochs) < 30 and "val_loss" in epochs[-1]
    val = clf.history_.series("val_loss")
    assert clf.history_.best_epoch == int(np.argmin(val))


def test_augmentation_specs_survive_save_load_and_clone(tmp_path, mi_epochs,
                                                        tiny_dbconformer_params):
    augmentation = [{"name": "segment_recombination", "n_segments": 4}, "gaussian_noise",
                    {"name": "frequency_shift", "max_shift_hz": 1.0}]
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1,
                           augmentation=augmentation)
    clf.fit(mi_epochs)  # sfreq comes with the epochs (frequency shift needs it)
    assert clone(clf).get_params()["augmentation"] == augmentation
    clf.save(tmp_path / "ckpt")
    assert SignalClassifier.load(tmp_path / "ckpt").get_params()["augmentation"] == \
        [augmentation[0], {"name": "gaussian_noise"}, augmentation[2]]


def test_euclidean_alignment_per_subject_ignores_subject_amplitude(mi_epochs,
                                                                   tiny_dbconformer_params):
    X, y = mi_epochs.data, mi_epochs.labels
    subjects = np.repeat([1, 2], 30)
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=2,
                           euclidean_alignment=True).fit(X, y, subjects=subjects)
    proba = clf.predict_proba(X[30:], subjects=subjects[30:])
    # alignment whitens each subject: a subject recorded with 4x the gain looks the same
    np.testing.assert_allclose(clf.predict_proba(4 * X[30:], subjects=subjects[30:]), proba,
                               atol=1e-5)
    unaligned = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=2).fit(X, y)
    assert not np.allclose(unaligned.predict_proba(4 * X[30:]), unaligned.predict_proba(X[30:]),
                           atol=1e-3)


def test_alignment_of_few_trials_warns_and_the_training_reference_avoids_it(
        mi_epochs, tiny_dbconformer_params, tmp_path):
    import warnings

    from sigformer import SignalError
    from sigformer.estimators import AlignmentWarning
    from sigformer.stages import trial_covariances

    X, y = mi_epochs.data, mi_epochs.labels  # 22 channels
    subjects = np.repeat([1, 2], 30)
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1,
                           euclidean_alignment=True).fit(X, y, subjects=subjects)
    np.testing.assert_allclose(clf.ea_reference_, trial_covariances(X).mean(0), rtol=1e-4)
    np.testing.assert_allclose(clf.ea_subject_references_[2],
                               trial_covariances(X[30:]).mean(0), rtol=1e-4)
    with pytest.warns(AlignmentWarning, match=r"fewer trials than channels \+ 1 \(23\)"):
        clf.predict_proba(X[:1])  # one trial whitened by itself
    with warnings.catch_warnings():
        warnings.simplefilter("error", AlignmentWarning)
        # a training subject's trial gets that subject's reference, alone or in a batch
        alone = clf.predict_proba(X[:1], subjects=[1], reference="training")
        among = clf.predict_proba(X[:30], subjects=subjects[:30], reference="training")
        np.testing.assert_allclose(alone[0], among[0], atol=1e-5)
        np.testing.assert_allclose(
            clf.predict_proba(X[:1], reference=clf.ea_subject_references_[1]), alone, atol=1e-5)
        # without subjects (or for a new subject): the pooled training reference
        pooled = clf.predict_proba(X[:2], reference=clf.ea_reference_)
        np.testing.assert_allclose(clf.predict_proba(X[:2], reference="training"), pooled,
                                   atol=1e-5)
        np.testing.assert_allclose(
            clf.predict_proba(X[:2], subjects=[7, 7], reference="training"), pooled, atol=1e-5)
        clf.save(tmp_path / "ckpt")  # the checkpoint keeps the pooled reference
        loaded = SignalClassifier.load(tmp_path / "ckpt")
        np.testing.assert_allclose(loaded.predict_proba(X[:2], reference="training"), pooled,
                                   atol=1e-5)
    del loaded.ea_reference_  # a checkpoint saved before references were stored
    with pytest.raises(ValueError, match="saved before they were"):
        loaded.predict_proba(X[:2], reference="training")
    with pytest.raises(SignalError, match=r"reference must be a \(22, 22\) covariance"):
        clf.predict_proba(X[:2], reference=np.eye(3))
    with pytest.raises(ValueError, match="reference must be None, 'training'"):
        clf.predict_proba(X[:2], reference="train")
    plain = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="euclidean_alignment=False"):
        plain.predict_proba(X[:2], reference="training")
    assert not hasattr(plain, "ea_reference_")


def test_fine_tune_continues_from_the_fitted_weights(mi_epochs, tiny_dbconformer_params):
    import torch

    from sigformer import SignalError

    X, y = mi_epochs.data, mi_epochs.labels
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=2,
                           validation_split=0.2, early_stopping_patience=3).fit(X[:40], y[:40])
    before = {k: v.clone() for k, v in clf.module_.state_dict().items()}
    clf.fine_tune(X[40:44], y[40:44], max_epochs=1, new_head=True)  # 2 trials per class
    after = clf.module_.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("final_layer") for k in changed)
    assert len(clf.history_.epochs) == 1  # no validation split on 4 trials
    with pytest.raises(SignalError, match=r"label\(s\) \[7\] the model was not fitted on"):
        clf.fine_tune(X[:2], [7, 7], max_epochs=1)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        clf.fine_tune(X[:2], y[:2], max_epochs=0)


# --- units and shapes (review 7) ---------------------------------------------------------

def test_sigformer_epochs_reach_the_model_in_microvolts_as_mne_epochs_do(mi_epochs):
    """The same trials as sigformer Epochs (volts, the default unit) and as mne.Epochs give
    the same model input; Epochs already in microvolts pass unchanged."""
    from sigformer.estimators import as_trials

    volts = mi_epochs[np.arange(len(mi_epochs))]
    volts.data, volts.unit = mi_epochs.data * 1e-6, "V"
    from_sigformer, info = as_trials(volts)
    from_mne, _ = as_trials(volts.to_mne())
    np.testing.assert_array_equal(from_sigformer, from_mne)
    assert info["sfreq"] == mi_epochs.sfreq
    np.testing.assert_allclose(as_trials(mi_epochs)[0], from_mne, rtol=1e-5)  # unit="uV"
    millivolts = volts[np.arange(len(volts))]
    millivolts.data, millivolts.unit = volts.data * 1e3, "mV"
    np.testing.assert_allclose(as_trials(millivolts)[0], from_mne, rtol=1e-5)


def test_fit_on_volts_warns_and_fit_on_microvolts_does_not(mi_epochs, tiny_dbconformer_params):
    import warnings

    from sigformer.estimators import ScaleWarning

    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1)
    with pytest.warns(ScaleWarning, match=r"look like volts .*Multiply by 1e6"):
        clf.fit(mi_epochs.data * 1e-6, mi_epochs.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScaleWarning)
        clf.fit(mi_epochs.data, mi_epochs.labels)
        volts = mi_epochs[np.arange(len(mi_epochs))]
        volts.data, volts.unit = mi_epochs.data * 1e-6, "V"
        clf.fit(volts)  # Epochs say their unit: converted, no warning


def test_one_2d_multichannel_trial_gets_the_x_none_hint(mi_epochs, tiny_dbconformer_params):
    from sigformer import SignalError

    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=1)
    clf.fit(mi_epochs.data, mi_epochs.labels)
    with pytest.raises(SignalError, match=r"2-D input is read as single-channel trials.*"
                                          r"pass one multichannel trial as X\[None\] "
                                          r"\(shape \(1, 22, 200\)\)"):
        clf.predict(mi_epochs.data[0])
    with pytest.raises(SignalError, match=r"X is 2-D \(shape \(60, 200\)\).*22 channels"):
        clf.predict(mi_epochs.data[:, 0])
    assert clf.predict(mi_epochs.data[0][None]).shape == (1,)


def test_decision_function_is_sample_order_invariant(mi_epochs):
    """sklearn's sample-order check at float32 precision (its rtol 1e-7 is below what float32
    kernels guarantee once the batches regroup): permuting the trials permutes the outputs."""
    X, y = mi_epochs.data[:30], mi_epochs.labels[:30]
    clf = _check_estimator().fit(X, y)
    order = np.random.default_rng(0).permutation(len(X))
    for method in ("decision_function", "predict_proba"):
        np.testing.assert_allclose(getattr(clf, method)(X[order]), getattr(clf, method)(X)[order],
                                   rtol=1e-5, atol=1e-6, err_msg=method)


# --- review fixes (fourteenth session) ---------------------------------------------------

@pytest.mark.parametrize("seed", [np.int64(3), np.random.RandomState(0),
                                  np.random.default_rng(0)])
def test_numpy_random_states_are_accepted(clf, mi_epochs, seed):
    clf.set_params(max_epochs=1, random_state=seed, validation_split=0.25)
    proba = clf.fit(mi_epochs).predict_proba(mi_epochs)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)


def test_integer_seeds_of_numpy_and_python_give_the_same_fit(clf, mi_epochs):
    clf.set_params(max_epochs=1)
    a = clone(clf).set_params(random_state=3).fit(mi_epochs).predict_proba(mi_epochs)
    b = clone(clf).set_params(random_state=np.int64(3)).fit(mi_epochs).predict_proba(mi_epochs)
    np.testing.assert_array_equal(a, b)


def test_bad_random_state_is_refused(clf, mi_epochs):
    with pytest.raises(ValueError, match="random_state must be None, an int"):
        clf.set_params(random_state="zero", max_epochs=1).fit(mi_epochs)


def test_an_augmentation_object_is_not_changed_by_fit(clf, mi_epochs):
    from sigformer.augment import SegmentRecombination

    aug = SegmentRecombination(n_segments=4)
    clf.set_params(max_epochs=1, augmentation=[aug]).fit(mi_epochs)
    assert aug._pool == {}  # the training set went into a copy, not the user's object
    assert clf.get_params()["augmentation"][0] is aug
    assert len(pickle.dumps(clf.get_params())) < 10_000


def test_cross_val_score_splits_sigformer_and_mne_epochs(clf, mi_epochs):
    clf.set_params(max_epochs=1)
    for data in (mi_epochs, _volts(mi_epochs).to_mne()):
        scores = cross_val_score(clf, data, mi_epochs.labels, cv=2)
        assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
    assert mi_epochs[np.arange(5)].shape == (5, *mi_epochs.shape[1:])


def _volts(epochs):
    volts = epochs[np.arange(len(epochs))]
    volts.data, volts.unit = volts.data * 1e-6, "V"
    return volts


def test_mne_epochs_give_only_their_data_channels(clf, mi_epochs):
    import mne

    mne_epochs = _volts(mi_epochs).to_mne()
    extra = mne.EpochsArray(
        np.concatenate([np.full((len(mi_epochs), 1, mi_epochs.n_times), 5.0),
                        np.random.default_rng(0).normal(0, 1e-4, (len(mi_epochs), 1,
                                                                  mi_epochs.n_times))], 1),
        mne.create_info(["STI", "EOG1"], mi_epochs.sfreq, ["stim", "eog"]), verbose="error")
    with_extra = mne_epochs.copy().add_channels([extra], force_update_info=True)
    clf.set_params(max_epochs=1).fit(with_extra, mi_epochs.labels)
    assert clf.n_chans_ == 22 and "STI" not in clf.ch_names_ and "EOG1" not in clf.ch_names_
    np.testing.assert_allclose(clf.predict_proba(with_extra), clf.predict_proba(mne_epochs),
                               atol=1e-6)


def test_single_channel_trials_predict_as_2d_after_a_3d_fit(clf, mi_epochs):
    X = mi_epochs.data[:, :1]  # (n, 1, T)
    clf.set_params(max_epochs=1).fit(X, mi_epochs.labels)
    np.testing.assert_allclose(clf.predict_proba(X[:, 0]), clf.predict_proba(X), atol=1e-6)


def test_score_takes_the_labels_of_epochs(clf, mi_epochs):
    clf.set_params(max_epochs=1).fit(mi_epochs)
    assert clf.score(mi_epochs) == clf.score(mi_epochs, mi_epochs.labels)


def test_fine_tune_with_a_new_head_is_reproducible_from_its_seed(clf, mi_epochs):
    import copy

    clf.set_params(max_epochs=1).fit(mi_epochs)
    first = copy.deepcopy(clf).fine_tune(mi_epochs[:10], mi_epochs.labels[:10], max_epochs=1,
                                         new_head=True)
    torch.rand(1)  # whatever else ran in between must not change the new head
    second = copy.deepcopy(clf).fine_tune(mi_epochs[:10], mi_epochs.labels[:10], max_epochs=1,
                                          new_head=True)
    np.testing.assert_array_equal(first.predict_proba(mi_epochs), second.predict_proba(mi_epochs))


def test_unseeded_fits_draw_different_augmentations():
    from sigformer.training import ClassifierModule

    a = ClassifierModule(torch.nn.Linear(2, 2), seed=None).augment_generator
    b = ClassifierModule(torch.nn.Linear(2, 2), seed=None).augment_generator
    assert not torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    c = ClassifierModule(torch.nn.Linear(2, 2), seed=7).augment_generator
    d = ClassifierModule(torch.nn.Linear(2, 2), seed=7).augment_generator
    assert torch.equal(torch.rand(3, generator=c), torch.rand(3, generator=d))
