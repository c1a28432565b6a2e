"""New-user review, EEG and message findings: the alignment warning names the subject and
comes once per fit and cause, TokenTransformer names missing tokenizer arguments, the collapse
warning prints plain labels, a speech checkpoint points at package_speech, and the text about
the tokenizer pipeline and the LSL config is true."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from sigformer.estimators import AlignmentWarning, SignalClassifier, alignment_warnings_once

REPO = Path(__file__).resolve().parents[1]


def _alignment_messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, AlignmentWarning)]


def _classifier(params: dict) -> SignalClassifier:
    return SignalClassifier(model_params=params, max_epochs=1, euclidean_alignment=True)


def test_alignment_warning_names_the_subject_and_comes_once_per_fit_and_cause(
        mi_epochs, tiny_dbconformer_params):
    X, y = mi_epochs.data, mi_epochs.labels  # 60 trials, 22 channels
    subjects = np.repeat([1, 2], [50, 10])  # subject 2: fewer than 23 trials
    clf = _classifier(tiny_dbconformer_params)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # count every warning, not Python's first one
        clf.fit(X, y, subjects=subjects)
        fit_messages = _alignment_messages(record)
        for _ in range(3):  # three small prediction batches: one warning
            clf.predict_proba(X[:3], subjects=[4, 4, 4])
            clf.predict_proba(X[:2])
        predict_messages = _alignment_messages(record)[len(fit_messages):]
    assert len(fit_messages) == 1
    assert "Euclidean alignment of subject 2 (10 trials, 22 channels): fewer trials than " \
           "channels + 1 (23)" in fit_messages[0]
    assert "training trials" in fit_messages[0]  # the fit's advice
    assert len(predict_messages) == 1
    assert "subject 4 (3 trials, 22 channels)" in predict_messages[0]
    assert "of 4: 3" not in predict_messages[0]
    with warnings.catch_warnings(record=True) as record:  # a new fit warns afresh
        warnings.simplefilter("always")
        clf.fit(X, y, subjects=np.repeat([1, 2], 30))
        clf.predict_proba(X[:2])
        clf.predict_proba(X[:2])
    messages = _alignment_messages(record)
    assert len(messages) == 1 and "the 2 trials of this call (22 channels" in messages[0]


def test_cross_validation_in_one_run_warns_once_not_once_per_fold(
        mi_epochs, tiny_dbconformer_params):
    from sigformer.evaluation import within_session_cv

    X, y = mi_epochs.data, mi_epochs.labels
    with warnings.catch_warnings(record=True) as record, alignment_warnings_once():
        warnings.simplefilter("always")
        # three folds: each clone predicts 20 trials of 22 channels, too few to align
        within_session_cv(_classifier(tiny_dbconformer_params), X, y, n_splits=3)
    messages = _alignment_messages(record)
    assert len(messages) == 1 and "subject 0 (20 trials, 22 channels)" in messages[0]


def test_token_transformer_names_missing_tokenizer_arguments():
    from sigformer.tokenizers import TokenTransformer

    X = np.zeros((2, 1, 100), np.float32)
    with pytest.raises(ValueError, match=r"'patch' needs patch_size, embed_dim .*"
                                         r"params=\{'patch_size': \.\.\., 'embed_dim': \.\.\.\}"):
        TokenTransformer("patch", max_epochs=0).fit(X)
    with pytest.raises(ValueError, match=r"needs embed_dim \(no default\)"):
        TokenTransformer("patch", params={"patch_size": 10}, max_epochs=0).fit(X)
    fitted = TokenTransformer("patch", params={"patch_size": 10, "embed_dim": 4},
                              max_epochs=0).fit(X)
    assert fitted.transform(X).shape == (2, 10, 4)


def test_collapse_warning_prints_plain_label_names():
    from sigformer.guardrails import CollapseWarning, check_predictions
    from sigformer.tasks.classify import fold_predictions

    confusion = [[40, 0], [60, 0]]  # every test trial called left_hand
    with pytest.warns(CollapseWarning) as record:
        message = check_predictions(fold_predictions(confusion, ["left_hand", "right_hand"]))
    assert "predicts 'left_hand' for 100% of 100 examples" in message
    assert "np.str_" not in message and "np.str_" not in str(record[0].message)
    assert fold_predictions([[3, 1], [0, 2]], ["a", "b"]).tolist() == ["a"] * 3 + ["b"] * 3
    # numpy labels of any kind reach the message as plain values
    with pytest.warns(CollapseWarning):
        assert "predicts 'x' for" in check_predictions(np.array(["x"] * 20))
    with pytest.warns(CollapseWarning):
        assert "predicts 1 for" in check_predictions(np.ones(20, np.int64))


def test_a_speech_checkpoint_points_at_package_speech(tmp_path):
    from sigformer.bundle import Bundle
    from sigformer.checkpoint import CheckpointError, save_checkpoint
    from sigformer.models import create_model

    model = create_model("mossformer", n_filters=8, depth=1, group_size=8, query_key_dim=8)
    run = save_checkpoint(tmp_path / "mossformer_run", model, extra={"step": 10})
    with pytest.raises(CheckpointError) as err:
        Bundle.load(run)
    message = str(err.value)
    assert "mossformer speech checkpoint" in message
    assert f"python scripts/package_speech.py {run} --dest DIR" in message
    assert "sigformer run" not in message


def test_tokenize_pipeline_comment_states_its_window_length():
    path = REPO / "pipelines" / "eeg_tokenize_tfm.yaml"
    text = path.read_text()
    said = re.search(r"Default data: ([\d.]+) s motor-imagery windows", text)
    config = yaml.safe_load(text)
    window = config["epochs"]["tmax"] - config["epochs"]["tmin"]
    assert said is not None and float(said.group(1)) == window
    assert config["data"]["simulator"]["trial_duration"] >= window


def test_lsl_config_comment_says_where_lslapicfg_points(tmp_path, monkeypatch):
    from sigformer.streaming.lsl import shipped_config_path, use_loopback_config

    monkeypatch.setenv("LSLAPICFG", "")  # restored (or removed) after the test
    monkeypatch.delenv("LSLAPICFG")
    assert use_loopback_config() == shipped_config_path()  # the file itself, by default
    monkeypatch.delenv("LSLAPICFG", raising=False)
    copy = use_loopback_config("run-7", directory=tmp_path)
    assert copy.parent == tmp_path and "SessionID = run-7" in copy.read_text()
    comment = " ".join(line.lstrip("; ") for line in shipped_config_path().read_text()
                       .splitlines() if line.startswith(";"))
    assert "at this file itself" in comment and "given a session_id" in comment
