import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from sigformer import SignalError
from sigformer.evaluation import (
    cross_session,
    cross_subject,
    few_shot_curve,
    leave_one_subject_out,
    within_session_cv,
)
from sigformer.metrics import classification_metrics


class _PowerClassifier(ClassifierMixin, BaseEstimator):
    """Log-variance of channel 0 vs channel 1: a fast, real classifier for protocol tests."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        feat = self._feature(X)
        self.threshold_ = (feat[y == self.classes_[0]].mean() + feat[y == self.classes_[1]]
                           .mean()) / 2
        self.sign_ = np.sign(feat[y == self.classes_[1]].mean() - self.threshold_)
        return self

    @staticmethod
    def _feature(X):
        return np.log(X[:, 0].var(-1)) - np.log(X[:, 1].var(-1))

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-self.sign_ * (self._feature(X) - self.threshold_) * 5))
        return np.column_stack([1 - p, p])


def _data(rng, n=60):
    X = rng.standard_normal((n, 2, 100))
    y = np.arange(n) % 2
    X[y == 1, 0] *= 2
    return X, y


def test_metrics_match_sklearn(rng):
    y = rng.integers(0, 3, 50)
    proba = rng.dirichlet(np.ones(3), 50)
    pred = proba.argmax(1)
    m = classification_metrics(y, pred, proba, [0, 1, 2])
    assert m["kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    with pytest.raises(ValueError, match="unknown metric"):
        classification_metrics(y, pred, which=["f1"])


def test_within_session_cv(rng):
    X, y = _data(rng)
    sessions = np.repeat(["s1", "s2"], 30)
    res = within_session_cv(_PowerClassifier(), X, y, sessions=sessions, n_splits=3, seeds=(0, 1))
    assert len(res.rows) == 2 * 2 * 3
    assert {r["session"] for r in res.rows} == {"s1", "s2"}
    summary = res.summary()
    assert summary["accuracy"]["mean"] > 0.8 and summary["roc_auc"]["mean"] > 0.9
    assert res.confusion.sum() == 2 * len(y)  # every trial tested once per seed
    with pytest.raises(SignalError, match="fewer than n_splits"):
        within_session_cv(_PowerClassifier(), X[:6], y[:6], n_splits=5)


class _FoldSpy(_PowerClassifier):
    """Records which subjects (coded in sample 0 of channel 1... as a tag) each fold sees."""

    folds: list = []

    def fit(self, X, y):
        self.train_tags_ = sorted(set(X[:, 1, 0].astype(int)))
        return super().fit(X, y)

    def predict_proba(self, X):
        type(self).folds.append((self.train_tags_, sorted(set(X[:, 1, 0].astype(int)))))
        return super().predict_proba(X)


def test_within_session_cv_keeps_subjects_apart_when_session_names_repeat(rng):
    X, y = _data(rng, n=90)
    subjects = np.repeat([1, 2, 3], 30)
    X[:, 1, 0] = subjects  # tag each trial with its subject
    sessions = np.array(["0train"] * 90)  # MOABB's session name, the same for everyone
    _FoldSpy.folds = []
    res = within_session_cv(_FoldSpy(), X, y, sessions=sessions, subjects=subjects,
                            n_splits=3)
    assert [(r["subject"], r["session"]) for r in res.rows] == \
        [(s, "0train") for s in ("1", "2", "3") for _ in range(3)]
    assert _FoldSpy.folds == [([s], [s]) for s in (1, 2, 3) for _ in range(3)]
    assert res.confusion.sum() == len(y)
    _FoldSpy.folds = []  # without subjects: one person's trials (the old pooled CV)
    within_session_cv(_FoldSpy(), X, y, sessions=sessions, n_splits=3)
    assert _FoldSpy.folds[0] == ([1, 2, 3], [1, 2, 3])
    with pytest.raises(SignalError, match=r"subject 3, session 0train lacks class\(es\) \[1\]"):
        within_session_cv(_PowerClassifier(), X[:75], y[:75] * (np.arange(75) < 60),
                          sessions=sessions[:75], subjects=subjects[:75], n_splits=3)
    with pytest.raises(SignalError, match="subjects has 2 entries for 90 trials"):
        within_session_cv(_PowerClassifier(), X, y, subjects=[1, 2], n_splits=3)


def test_leave_one_subject_out(rng):
    X, y = _data(rng)
    subjects = np.repeat([1, 2, 3], 20)
    res = leave_one_subject_out(_PowerClassifier(), X, y, subjects=subjects)
    assert [r["subject"] for r in res.rows] == ["1", "2", "3"]
    assert all(r["n_test"] == 20 for r in res.rows)
    with pytest.raises(SignalError, match="at least 2 subjects"):
        leave_one_subject_out(_PowerClassifier(), X, y, subjects=np.ones(60))


class _SubjectAware(_PowerClassifier):
    """Records the subjects it is given; adapts its threshold on calibration trials."""

    seen: list = []

    def fit(self, X, y, subjects=None):
        type(self).seen.append(("fit", None if subjects is None else sorted(set(subjects))))
        return super().fit(X, y)

    def predict_proba(self, X, subjects=None):
        type(self).seen.append(("predict", None if subjects is None else sorted(set(subjects))))
        return super().predict_proba(X)

    def fine_tune(self, X, y, subjects=None, *, max_epochs=None, new_head=False):
        return super().fit(X, y)  # recalibrate the threshold on the new subject


def _subjects_data(rng, n_subjects=3, n=40):
    X = rng.standard_normal((n_subjects * n, 2, 100))
    y = np.tile(np.arange(n) % 2, n_subjects)
    X[y == 1, 0] *= 2
    subjects = np.repeat(np.arange(n_subjects), n)
    X[subjects == n_subjects - 1, 1] *= 3  # the last subject's feature is offset
    return X, y, subjects


def test_cross_subject_passes_subjects_to_both_sides(rng):
    X, y, subjects = _subjects_data(rng)
    _SubjectAware.seen = []
    res = cross_subject(_SubjectAware(), X, y, subjects=subjects)
    assert [r["subject"] for r in res.rows] == ["0", "1", "2"]
    assert _SubjectAware.seen[:2] == [("fit", [1, 2]), ("predict", [0])]
    res = cross_subject(_PowerClassifier(), X, y, subjects=subjects, n_splits=3, seeds=(0, 1))
    assert len(res.rows) == 6 and res.confusion.sum() == 2 * len(y)
    with pytest.raises(SignalError, match="n_splits must be between 2"):
        cross_subject(_PowerClassifier(), X, y, subjects=subjects, n_splits=4)


def test_cross_session(rng):
    X, y, subjects = _subjects_data(rng, n_subjects=2)
    sessions = np.tile(np.repeat(["s1", "s2"], 20), 2)
    res = cross_session(_PowerClassifier(), X, y, sessions=sessions, subjects=subjects)
    assert [(r["subject"], r["session"]) for r in res.rows] == [
        ("0", "s1"), ("0", "s2"), ("1", "s1"), ("1", "s2")]
    assert all(r["n_train"] == 20 and r["n_test"] == 20 for r in res.rows)
    with pytest.raises(SignalError, match="has one session"):
        cross_session(_PowerClassifier(), X, y, sessions=np.zeros(len(y)), subjects=subjects)
    with pytest.raises(SignalError, match="sessions has 3 entries for 80 trials"):
        cross_session(_PowerClassifier(), X, y, sessions=[1, 2, 3])


def test_few_shot_curve_calibrates_an_offset_subject(rng):
    X, y, subjects = _subjects_data(rng)
    res = few_shot_curve(_SubjectAware(), X, y, subjects=subjects, targets=[2],
                         shots=(0, 2, 10), n_repeats=3)
    assert len(res.rows) == 3 * 3
    assert {r["n_test"] for r in res.rows} == {20}  # same test trials for every k
    curve = res.curve()
    # the threshold learnt on subjects 0/1 fails on subject 2; its own trials fix it
    assert curve[0]["mean"] < 0.7 and curve[10]["mean"] > 0.85
    with pytest.raises(SignalError, match="leave no test trial"):
        few_shot_curve(_PowerClassifier(), X, y, subjects=subjects, targets=[2], shots=(20,))


def test_few_shot_curve_without_fine_tune_refits_on_source_plus_calibration(rng):
    X, y, subjects = _subjects_data(rng)
    res = few_shot_curve(_PowerClassifier(), X, y, subjects=subjects, targets=[0],
                         shots=(0, 5), n_repeats=1)
    assert [r["shots"] for r in res.rows] == [0, 5]
    assert set(res.to_dict()["curve"]) == {"0", "5"}


def test_few_shot_curve_fine_tunes_a_signal_classifier_on_simulated_subjects(
        tiny_dbconformer_params):
    from sigformer.data import simulate_motor_imagery
    from sigformer.estimators import SignalClassifier

    X, y, subjects = [], [], []
    for subject, gain in ((0, 1.0), (1, 2.0)):
        rec = simulate_motor_imagery(24, sfreq=100.0, trial_duration=2.0, snr_db=3.0, seed=subject)
        ep = rec.epochs({"left_hand": 0, "right_hand": 1}, 0.0, 2.0)
        X.append(ep.data * 1e6 * gain)
        y.append(ep.labels)
        subjects.append(np.full(len(ep.labels), subject))
    X, y, subjects = np.concatenate(X), np.concatenate(y), np.concatenate(subjects)
    clf = SignalClassifier(model_params=tiny_dbconformer_params, max_epochs=2,
                           euclidean_alignment=True)
    res = few_shot_curve(clf, X, y, subjects=subjects, targets=[1], shots=(0, 4),
                         n_repeats=1, fine_tune_epochs=2, new_head=True)
    zero, four = res.rows
    assert zero["shots"] == 0 and four["shots"] == 4 and zero["n_test"] == four["n_test"] == 16
    assert 0 <= four["accuracy"] <= 1
    assert zero["roc_auc"] != four["roc_auc"]  # the fine-tuned copy is another model


class _Recorder(_SubjectAware):
    """Records what its fit and fine_tune receive and the random_state it was fitted with."""

    given: dict = {}

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y, subjects=None):
        type(self).given.setdefault("fit", []).append(np.array(X))
        type(self).given.setdefault("random_state", []).append(self.random_state)
        return super().fit(X, y, subjects)

    def fine_tune(self, X, y, subjects=None, *, max_epochs=None, new_head=False):
        type(self).given.setdefault("fine_tune", []).append(np.array(X))
        return super().fine_tune(X, y, subjects)


class _SeededScaler(BaseEstimator):
    """A first step with its own random_state: multiplies by 1e6 (volts -> microvolts)."""

    fitted_states: list = []

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y=None):
        type(self).fitted_states.append(self.random_state)
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        return np.asarray(X) * 1e6


def test_few_shot_curve_fine_tunes_a_pipeline_on_its_transformed_calibration_trials(rng):
    from sklearn.pipeline import make_pipeline

    X, y, subjects = _subjects_data(rng)
    X = X * 1e-6  # volts; the pipeline's first step makes microvolts
    _Recorder.given = {}
    few_shot_curve(make_pipeline(_SeededScaler(), _Recorder()), X, y, subjects=subjects,
                   targets=[2], shots=(0, 3), n_repeats=1)
    (fitted,), (tuned,) = _Recorder.given["fit"], _Recorder.given["fine_tune"]
    np.testing.assert_allclose(fitted, X[subjects != 2] * 1e6, rtol=1e-5)  # transformed
    assert len(tuned) == 6
    target = X[subjects == 2] * 1e6
    for trial in tuned:  # every calibration trial went through the first step too
        assert any(np.allclose(trial, t) for t in target)


def test_seeds_reach_every_step_of_a_pipeline(rng):
    from sklearn.pipeline import make_pipeline

    X, y = _data(rng)
    _Recorder.given, _SeededScaler.fitted_states = {}, []
    within_session_cv(make_pipeline(_SeededScaler(random_state=0), _Recorder(random_state=0)),
                      X, y, n_splits=2, seeds=(7, 8))
    assert _Recorder.given["random_state"] == [7, 7, 8, 8]
    assert _SeededScaler.fitted_states == [7, 7, 8, 8]
    _Recorder.given = {}
    within_session_cv(_Recorder(random_state=0), X, y, n_splits=2, seeds=(3,))
    assert _Recorder.given["random_state"] == [3, 3]


# --- plots ------------------------------------------------------------------------------

def test_learning_curves_show_validation_and_chance():
    import matplotlib

    matplotlib.use("Agg")
    from sigformer.report import chance_level, plot_learning_curves

    history = [{"train_loss": 1 - e / 10, "train_acc": 0.5 + e / 20, "val_loss": 1.0,
                "val_acc": 0.6} for e in range(5)]
    chance = chance_level([0, 0, 0, 1])
    assert chance == 0.75 and chance_level(n_classes=4) == 0.25
    fig = plot_learning_curves([history, history], chance=chance)
    acc_ax = fig.axes[1]
    labels = [line.get_label() for line in acc_ax.lines]
    assert "validation (mean of 2)" in labels and "chance (0.75)" in labels
    chance_line = acc_ax.lines[labels.index("chance (0.75)")]
    assert list(chance_line.get_ydata()) == [0.75, 0.75]


def test_grid_and_enhancement_plots_share_one_colour_scale(rng, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sigformer.report import (
        imshow_grid,
        plot_accuracy_vs_snr,
        plot_enhancement,
        shared_color_limits,
    )

    images = [rng.standard_normal((8, 8)), 10 + rng.standard_normal((8, 8))]
    vmin, vmax = shared_color_limits(images)
    assert vmin == pytest.approx(min(i.min() for i in images))
    assert vmax == pytest.approx(max(i.max() for i in images))
    assert shared_color_limits([np.array([-3.0, 1.0])], symmetric=True) == (-3.0, 3.0)
    fig = imshow_grid(images, ["a", "b"], path=tmp_path / "grid.png", ncols=2)
    assert (tmp_path / "grid.png").stat().st_size > 0
    clims = {im.get_clim() for ax in fig.axes for im in ax.get_images()}
    assert clims == {(vmin, vmax)}
    t = np.arange(1600) / 8000
    clean = np.sin(2 * np.pi * 440 * t)
    fig = plot_enhancement(clean + rng.standard_normal(1600), clean * 0.9, 8000, reference=clean)
    meshes = [c for ax in fig.axes if ax.get_ylabel() == "frequency (Hz)"
              for c in ax.collections]
    assert len(meshes) == 3 and len({m.get_clim() for m in meshes}) == 1
    fig = plot_accuracy_vs_snr([-10, 0, 10], {"model": [0.3, 0.6, 0.9]}, chance=0.1)
    assert any(line.get_label() == "chance (0.10)" for line in fig.axes[0].lines)


class _ReferenceRecorder(_SubjectAware):
    """An aligning estimator that records the reference its fine_tune and predict get."""

    euclidean_alignment = True
    calls: list = []

    def fine_tune(self, X, y, subjects=None, *, max_epochs=None, new_head=False,
                  reference=None):
        type(self).calls.append(("fine_tune", len(X), reference))
        return super().fine_tune(X, y, subjects)

    def predict_proba(self, X, subjects=None, reference=None):
        type(self).calls.append(("predict", len(X), reference))
        return super().predict_proba(X, subjects)


def test_few_shot_aligns_calibration_and_test_trials_with_the_calibration_pool(rng):
    from sigformer.stages import trial_covariances

    X, y, subjects = _subjects_data(rng)
    _ReferenceRecorder.calls = []
    few_shot_curve(_ReferenceRecorder(), X, y, subjects=subjects, targets=[2],
                   shots=(0, 2, 5), n_repeats=1, seed=0)
    calls = _ReferenceRecorder.calls
    assert [(c[0], c[1]) for c in calls] == [("predict", 30), ("fine_tune", 4),
                                             ("predict", 30), ("fine_tune", 10),
                                             ("predict", 30)]
    refs = [c[2] for c in calls]
    for ref in refs[1:]:
        np.testing.assert_array_equal(ref, refs[0])  # one reference for every k, both sides
    # the pool: the first 5 trials per class of the repeat's order; never a test trial
    X_t, y_t = X[subjects == 2], y[subjects == 2]
    order = np.random.default_rng(0)
    pool = np.concatenate([order.permutation(np.flatnonzero(y_t == c))[:5] for c in (0, 1)])
    np.testing.assert_allclose(refs[0], trial_covariances(X_t[pool]).mean(0), rtol=1e-5)


def test_multiclass_roc_auc_of_a_fold_without_one_class_is_the_macro_over_present_classes():
    """A held-out subject that lacks a class made the fold's multi-class ROC-AUC NaN (and
    the summary's nanmean silently dropped it)."""
    from sklearn.metrics import roc_auc_score

    from sigformer.metrics import roc_auc

    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2] * 20)  # class 3 of 4 absent
    proba = rng.dirichlet(np.ones(4), len(y))
    proba[np.arange(len(y)), y] += 0.5
    proba /= proba.sum(1, keepdims=True)
    value = roc_auc(y, proba, [0, 1, 2, 3])
    expected = np.mean([roc_auc_score(y == c, proba[:, c]) for c in (0, 1, 2)])
    assert value == pytest.approx(expected) and np.isfinite(value)
    full = np.array([0, 1, 2, 3] * 15)
    p_full = rng.dirichlet(np.ones(4), len(full))
    assert roc_auc(full, p_full, [0, 1, 2, 3]) == pytest.approx(
        roc_auc_score(full, p_full, multi_class="ovr", average="macro"))


class _LrRecorder(_SubjectAware):
    """Records the learning rate each fine_tune is given (None: the estimator's own)."""

    rates: list = []

    def fine_tune(self, X, y, subjects=None, *, max_epochs=None, new_head=False, lr=None):
        type(self).rates.append(lr)
        return super().fine_tune(X, y, subjects)


def test_few_shot_curve_passes_its_fine_tune_learning_rate(rng):
    X, y, subjects = _subjects_data(rng)
    _LrRecorder.rates = []
    few_shot_curve(_LrRecorder(), X, y, subjects=subjects, targets=[2], shots=(0, 2, 3),
                   n_repeats=1, fine_tune_lr=1e-4)
    assert _LrRecorder.rates == [1e-4, 1e-4]  # k = 2 and 3; k = 0 is not fine-tuned
    _LrRecorder.rates = []
    few_shot_curve(_LrRecorder(), X, y, subjects=subjects, targets=[2], shots=(0, 2),
                   n_repeats=1)
    assert _LrRecorder.rates == [None]
