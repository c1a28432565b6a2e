"""Registry and braindecode interop in both directions."""

import numpy as np
import pytest
import torch

from sigformer.models import UnknownModelError, create_model, list_models, list_presets


def test_registry_lists_and_creates():
    assert "dbconformer" in list_models()
    assert "dbconformer" in list_models("eeg")
    assert "bnci2014001" in list_presets("dbconformer")
    with_bd = list_models(include_braindecode=True)
    assert "braindecode.EEGNet" in with_bd and "braindecode.EEGConformer" in with_bd
    m = create_model("dbconformer", preset="bnci2014001", n_outputs=3)
    assert m.sigformer_config == {"name": "dbconformer",
                                  "kwargs": dict(n_chans=22, n_times=1001, sfreq=250,
                                                 n_outputs=3)}


def test_unknown_names_suggest_alternatives():
    with pytest.raises(UnknownModelError, match=r"unknown model 'dbconformr'.*did you mean"):
        create_model("dbconformr")
    with pytest.raises(UnknownModelError, match="braindecode has no model 'EEGNett'"):
        create_model("braindecode.EEGNett")
    with pytest.raises(UnknownModelError, match="no preset 'bnci'"):
        create_model("dbconformer", preset="bnci")
    with pytest.raises(TypeError, match="cannot build 'dbconformer'"):
        create_model("dbconformer", preset="bnci2014001", no_such_arg=1)


@pytest.mark.parametrize("name,expected", [
    ("braindecode.EEGNet", 3_444), ("braindecode.ShallowFBCSPNet", 46_084),
    ("braindecode.EEGConformer", 789_572),
])
def test_braindecode_models_by_name(name, expected):
    m = create_model(name, n_chans=22, n_outputs=4, n_times=1000, sfreq=250)
    assert sum(p.numel() for p in m.parameters()) == expected  # ecosystem.md counts


def test_braindecode_model_in_sigformer_estimator(mi_epochs):
    from sigformer.estimators import SignalClassifier

    clf = SignalClassifier(model="braindecode.ShallowFBCSPNet", max_epochs=2,
                           model_params=dict(pool_time_length=20, pool_time_stride=5,
                                             filter_time_length=10))
    clf.fit(mi_epochs.data, mi_epochs.labels)
    proba = clf.predict_proba(mi_epochs.data)
    assert proba.shape == (len(mi_epochs), 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)


def test_dbconformer_in_braindecode_eegclassifier(mi_epochs, tiny_dbconformer_params):
    from braindecode import EEGClassifier

    from sigformer.models import DBConformer

    X = mi_epochs.data.astype(np.float32)
    y = mi_epochs.labels
    clf = EEGClassifier(DBConformer, module__n_outputs=2, max_epochs=2, batch_size=16,
                        train_split=None, device="cpu", verbose=0,
                        **{f"module__{k}": v for k, v in tiny_dbconformer_params.items()})
    clf.fit(X, y)  # braindecode infers n_chans / n_times from X
    assert clf.module_.n_chans == X.shape[1] and clf.module_.n_times == X.shape[2]
    assert clf.predict(X).shape == y.shape
    assert torch.isfinite(torch.as_tensor(clf.predict_proba(X))).all()


def test_registered_name_knows_models_built_directly_and_by_name():
    from sigformer.models.eeg.tfm_tokenizer import TFMTokenizer
    from sigformer.models.registry import registered_name
    from sigformer.models.rf.adafortitran import AdaFortiTran, FortiTran

    assert registered_name(TFMTokenizer) == "tfm_tokenizer"
    assert registered_name(create_model("tfm_tokenizer", preset="tiny")) == "tfm_tokenizer"
    # a registered subclass is its own name, not its parent's
    assert registered_name(FortiTran) == "fortitran"
    assert registered_name(AdaFortiTran) == "adafortitran"
    assert registered_name(torch.nn.Linear(2, 2)) is None


def test_pretraining_dispatch_by_registered_name():
    from sigformer.models.eeg.tfm_tokenizer import TFMTokenizer
    from sigformer.recipes import has_pretraining_recipe, pretrain

    assert has_pretraining_recipe(TFMTokenizer())
    dbc = create_model("dbconformer", preset="bnci2014001", n_outputs=2)
    assert not has_pretraining_recipe(dbc)
    with pytest.raises(TypeError, match="no pretraining recipe for 'dbconformer'.*tfm_tokenizer"):
        pretrain(dbc, np.zeros((2, 22, 1001), np.float32))


def test_missing_input_size_names_the_sizes_to_give():
    with pytest.raises(ValueError, match=r"cannot build 'dbconformer'.*Give n_times, sfreq, "
                                         r"n_outputs \(preset 'tiny' sets none of them\)"):
        create_model("dbconformer", preset="tiny", n_chans=4)
    model = create_model("dbconformer", preset="tiny", n_chans=4, n_times=256, sfreq=128,
                         n_outputs=2)
    assert model(torch.zeros(1, 4, 256)).shape == (1, 2)
