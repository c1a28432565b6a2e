"""Review 12, items 1, 2, 3, 5 and 8: failed fits leave no fitted-looking state, the token
transformer trains every kind of tokenizer (or says why it cannot), chs_info reaches the
models that need it, one meaning of reset_head, and consistent registry errors."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sigformer.channels import ChannelSet
from sigformer.estimators import SignalClassifier
from sigformer.models import create_model
from sigformer.models.registry import (
    UnknownModelError,
    UnknownPresetError,
    list_domains,
    list_models,
    list_presets,
)
from sigformer.recording import Epochs
from sigformer.tokenizers import TokenTransformer
from sigformer.training import reinit_head, reset_head
from sigformer.validation import SignalError

TINY = dict(emb_size=8, num_heads=2, depth=1, spa_dim=4, patch_size=8, kernel_size=3)


def _trials(n=8, chans=3, times=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, chans, times)).astype(np.float32)


def _fitted_attributes(est) -> list[str]:
    return sorted(k for k in vars(est) if k.endswith("_") and not k.startswith("_"))


# --- item 1: a failed fit ---------------------------------------------------------------

def test_a_fit_that_fails_its_split_check_leaves_the_classifier_unfitted():
    clf = SignalClassifier(model_params=TINY, max_epochs=1, validation_split=0.2)
    X = _trials(5)
    with pytest.raises(ValueError, match="validation_split=0.2 cannot work with 5 trials"):
        clf.fit(X, [0, 0, 0, 1, 1])
    assert _fitted_attributes(clf) == []
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_a_fit_that_fails_after_building_the_model_leaves_it_unfitted():
    """class_weight naming an unknown label fails inside training, after the model exists."""
    clf = SignalClassifier(model_params=TINY, max_epochs=1, class_weight={"zzz": 2.0})
    X = _trials(6)
    with pytest.raises(ValueError, match=r"class_weight names label\(s\) \['zzz'\]"):
        clf.fit(X, [0, 1] * 3)
    assert _fitted_attributes(clf) == []
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_a_failed_refit_keeps_the_previous_fit_whole():
    X = _trials(6, chans=3)
    clf = SignalClassifier(model_params=TINY, max_epochs=1, batch_size=4).fit(X, [0, 1] * 3)
    before = {k: getattr(clf, k) for k in _fitted_attributes(clf)}
    weights = {k: v.clone() for k, v in clf.module_.state_dict().items()}
    proba = clf.predict_proba(X)
    clf.set_params(class_weight={"zzz": 2.0})
    with pytest.raises(ValueError, match="class_weight names"):
        clf.fit(_trials(6, chans=4, seed=1), ["a", "b", "c"] * 2)
    assert _fitted_attributes(clf) == sorted(before)
    assert all(getattr(clf, k) is v for k, v in before.items())  # none replaced
    assert clf.n_chans_ == 3 and clf.classes_.tolist() == [0, 1]
    assert all(torch.equal(v, weights[k]) for k, v in clf.module_.state_dict().items())
    np.testing.assert_allclose(clf.predict_proba(X), proba)


def test_a_failed_token_transformer_fit_leaves_it_unfitted():
    X = _trials(4, chans=2, times=128)
    tt = TokenTransformer("vq", params=dict(base="stft", base_kwargs=dict(n_fft=32, hop=16),
                                            num_codes=4), max_epochs=1)
    with pytest.raises(SignalError):
        tt.fit(np.full_like(X, np.nan))  # refused by the input check, after the build
    assert _fitted_attributes(tt) == []
    with pytest.raises(NotFittedError):
        tt.transform(X)
    tt.fit(X)
    fitted = tt.tokenizer_
    tt.set_params(params=dict(base="stft", base_kwargs=dict(n_fft=512, hop=16), num_codes=4))
    with pytest.raises(SignalError, match="shorter than one STFT window"):
        tt.fit(X)
    assert tt.tokenizer_ is fitted and tt.transform(X).shape == (4, 2 * 7)


# --- item 2: every tokenizer through TokenTransformer -----------------------------------

def test_token_transformer_fits_a_parameter_free_stft():
    X = _trials(4, chans=2, times=128)
    tt = TokenTransformer("stft", params=dict(n_fft=32, hop=16), output="embeddings").fit(X)
    assert tt.n_channels_ == 2
    assert tt.transform(X).shape == (4, 2 * 7, 17)  # 7 frames x 2 channels, 17 bins
    with pytest.raises(SignalError, match="fitted on 2 channels, got 3"):
        tt.transform(_trials(2, chans=3, times=128))


def test_token_transformer_learns_a_vq_codebook_with_numpy_epochs():
    X = _trials(6, chans=2, times=128)
    tt = TokenTransformer("vq", params=dict(base="stft", base_kwargs=dict(n_fft=32, hop=16),
                                            num_codes=8), max_epochs=np.int64(2)).fit(X)
    ids = tt.transform(X)
    assert ids.shape == (6, 14) and ids.dtype.kind == "i" and ids.max() < 8
    assert tt.codebook_report_["codebook_size"] == 8 and tt.codebook_report_["used_codes"] > 1


def test_token_transformer_channel_independent_vq_is_trained():
    X = _trials(4, chans=2, times=128)
    params = dict(tokenizer="vq", tokenizer_kwargs=dict(
        base="stft", base_kwargs=dict(n_fft=32, hop=16), num_codes=4))
    tt = TokenTransformer("channel_independent", params=params, max_epochs=1).fit(X)
    assert tt.transform(X).shape == (4, 14)


def test_token_transformer_says_when_a_tokenizer_cannot_be_trained():
    X = _trials(4, chans=2, times=128)
    params = dict(patch_size=16, embed_dim=8)
    with pytest.raises(ValueError, match=r"'patch' has learnable weights but no training "
                                         r"procedure.*max_epochs=0"):
        TokenTransformer("patch", params=params, output="embeddings").fit(X)
    a = TokenTransformer("patch", params=params, output="embeddings", max_epochs=0).fit(X)
    b = TokenTransformer("patch", params=params, output="embeddings", max_epochs=0).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))  # seeded projection
    assert a.transform(X).shape == (4, 2 * 8, 8)


def test_token_transformer_front_end_of_a_given_model_needs_no_training():
    model = create_model("clst", "tiny", n_chans=2, n_times=128, n_outputs=3)
    tt = TokenTransformer("iq_conv", params=dict(model=model), output="embeddings").fit(
        _trials(4, chans=2, times=128))
    assert tt.tokenizer_.training is False and tt.transform(_trials(2, 2, 128)).ndim == 3


@pytest.mark.parametrize("epochs, message", [
    (True, "got True"), (-1, "got -1"), (2.5, "got 2.5")])
def test_token_transformer_checks_max_epochs_like_the_classifier(epochs, message):
    tt = TokenTransformer("stft", output="embeddings", max_epochs=epochs)
    with pytest.raises(ValueError, match=rf"max_epochs must be None .*{message}"):
        tt.fit(_trials(2, 1, 256))


def test_token_transformer_refuses_ids_from_a_continuous_tokenizer():
    with pytest.raises(ValueError, match=r"'stft' makes continuous tokens \(no ids\)"):
        TokenTransformer("stft", params=dict(n_fft=32, hop=16), output="ids").fit(
            _trials(2, 1, 128))


def test_token_transformer_auto_output_follows_the_tokenizer():
    X = _trials(2, 1, 128)
    stft = TokenTransformer("stft", params=dict(n_fft=32, hop=16)).fit(X)  # output="auto"
    explicit = TokenTransformer("stft", params=dict(n_fft=32, hop=16), output="embeddings")
    out = stft.transform(X)
    assert out.dtype.kind == "f" and np.array_equal(out, explicit.fit(X).transform(X))


def test_token_transformer_refuses_an_untrained_learned_tokenizer():
    with pytest.raises(ValueError, match="max_epochs=0 with no weights: 'vq' is learned"):
        TokenTransformer("vq", params=dict(base="stft", num_codes=4), max_epochs=0).fit(
            _trials(2, 1, 256))


# --- item 3: chs_info from the data -------------------------------------------------------

def _epochs(montage: bool) -> Epochs:
    channels = ChannelSet(("C3", "Cz", "C4", "Pz"))
    rng = np.random.default_rng(0)
    return Epochs(rng.standard_normal((8, 4, 256)) * 1e-5, np.array([0, 1] * 4), 128.0,
                  channels.with_montage() if montage else channels, {"a": 0, "b": 1})


def test_chs_info_from_epochs_reaches_a_braindecode_model_that_needs_it():
    epochs = _epochs(montage=True)
    clf = SignalClassifier(model="braindecode.SignalJEPA_Contextual", max_epochs=1,
                           batch_size=4).fit(epochs)
    chs = clf.model_kwargs_["chs_info"]
    assert [ch["ch_name"] for ch in chs] == ["C3", "Cz", "C4", "Pz"]
    np.testing.assert_allclose([ch["loc"][:3] for ch in chs], epochs.channels.positions)
    again = pickle.loads(pickle.dumps(clf))  # chs_info survives the JSON config
    np.testing.assert_allclose(again.predict_proba(epochs), clf.predict_proba(epochs))


def test_chs_info_from_mne_epochs_and_given_chs_info_wins():
    epochs = _epochs(montage=True)
    clf = SignalClassifier(model_params=TINY, max_epochs=1, batch_size=4)
    clf.fit(epochs.data * 1e6, epochs.labels)
    assert "chs_info" not in clf.model_kwargs_  # a plain array carries none
    clf.fit(epochs.to_mne())
    assert [ch["ch_name"] for ch in clf.model_kwargs_["chs_info"]] == ["C3", "Cz", "C4", "Pz"]
    given = ChannelSet(("A", "B", "C", "D")).to_chs_info()
    clf.set_params(model_params={**TINY, "chs_info": given}).fit(epochs)
    assert [ch["ch_name"] for ch in clf.model_kwargs_["chs_info"]] == ["A", "B", "C", "D"]


def test_a_model_that_needs_chs_info_is_refused_clearly_without_it():
    epochs = _epochs(montage=True)
    clf = SignalClassifier(model="braindecode.SignalJEPA_Contextual", max_epochs=1)
    with pytest.raises(SignalError, match=r"needs channel names and positions \(chs_info\), "
                                          r"but the training data carry no channel "
                                          r"information"):
        clf.fit(epochs.data * 1e6, epochs.labels)
    assert _fitted_attributes(clf) == []


# --- item 5: one reinit_head for every classifier head --------------------------------------

@pytest.mark.parametrize("name, kwargs, head", [
    ("dbconformer", dict(TINY, n_chans=3, n_times=64), "final_layer"),
    ("clst", dict(n_chans=2, n_times=128), "head"),
    ("vtcnn2", dict(n_chans=2, n_times=128), "classifier"),
])
def test_reinit_head_finds_every_head_and_touches_only_it(name, kwargs, head):
    torch.manual_seed(0)
    model = create_model(name, "tiny" if name == "clst" else None, n_outputs=3, **kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert reinit_head(model) is model
    changed = {k for k, v in model.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, before[k])}
    assert changed and all(k.startswith(head + ".") for k in changed)
    assert reset_head(model) is True  # the deprecated alias agrees


def test_reinit_head_refuses_a_model_without_a_head():
    with pytest.raises(ValueError, match="has no output head named one of"):
        reinit_head(torch.nn.Linear(2, 2))
    assert reset_head(torch.nn.Linear(2, 2)) is False


def test_fine_tune_with_a_new_head_works_for_a_head_named_head():
    X = _trials(8, chans=2, times=128)
    y = [0, 1] * 4
    clf = SignalClassifier(model="clst", preset="tiny", max_epochs=1, batch_size=4).fit(X, y)
    clf.fine_tune(X[:4], y[:4], max_epochs=1, new_head=True)
    assert clf.predict(X).shape == (8,)


# --- item 8: registry errors ------------------------------------------------------------

def test_unknown_preset_is_one_error_type_for_both_kinds_of_model():
    for name, kwargs in [("dbconformer", {}),
                         ("braindecode.EEGNet", dict(n_chans=2, n_outputs=2, n_times=128))]:
        with pytest.raises(UnknownPresetError, match=rf"model '{name}' has no preset 'nope'"):
            create_model(name, preset="nope", **kwargs)
    assert issubclass(UnknownPresetError, UnknownModelError)
    assert issubclass(UnknownPresetError, ValueError)


def test_list_presets_of_a_braindecode_model_is_empty():
    assert list_presets("braindecode.EEGNet") == []
    with pytest.raises(UnknownModelError, match="braindecode has no model 'EEGNett'"):
        list_presets("braindecode.EEGNett")
    assert "tiny" in list_presets("dbconformer")


def test_list_models_refuses_an_unknown_domain():
    assert list_domains() == ["eeg", "rf", "seeg", "speech"]
    assert "dbconformer" in list_models("eeg")
    for domain in ("EEG", "bogus"):
        with pytest.raises(ValueError, match=rf"unknown domain '{domain}'; known domains: "
                                             r"\['eeg', 'rf', 'seeg', 'speech'\]"):
            list_models(domain)


def test_a_wrong_case_braindecode_name_gets_a_suggestion():
    with pytest.raises(UnknownModelError, match=r"braindecode has no model 'eegnet'; did you "
                                                r"mean \['braindecode.EEGNet'\]"):
        create_model("braindecode.eegnet")


def test_a_misspelt_argument_gets_a_suggestion():
    with pytest.raises(TypeError, match="did you mean 'n_chans' for 'n_chan'"):
        create_model("dbconformer", preset="tiny", n_chan=3)


def test_an_unknown_model_message_reads_as_sentences():
    with pytest.raises(UnknownModelError, match=r"unknown model 'zzzzzz'\. Known models: \["):
        create_model("zzzzzz")
