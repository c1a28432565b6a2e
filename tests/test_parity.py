"""Official parity: official-format weights -> converter -> sigformer model -> the official
module's stored outputs (shared/reference/parity, see its README), plus the converter's checks.

Each fixture holds seeded official weights under the official key names, an input batch and the
official module's outputs (eval mode, no_grad). Passing these tests is the proof that sigformer
computes what the official code computes and that the converter maps every official tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigformer.models import create_model
from sigformer.models.convert import (
    CONVERTIBLE,
    ConversionError,
    convert_state_dict,
    load_official,
    read_official_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
_REFERENCE = Path(os.environ.get("SIGFORMER_SHARED_REFERENCE",
                                 REPO.parent / "shared" / "reference"))
PARITY = _REFERENCE / "parity" if (_REFERENCE / "parity").is_dir() else _REFERENCE
TOL = 1e-5
# fixture folder -> registry name
FIXTURES = {"dbconformer": "dbconformer", "tfm_tokenizer": "tfm_tokenizer",
            "tfm_encoder": "tfm_encoder", "duin_cls": "duin", "duin_vqvae": "duin_vqvae",
            "duin_mae": "duin_mae", "mossformer": "mossformer", "deftan2": "deftan2",
            "adafortitran": "adafortitran"}

needs_fixtures = pytest.mark.skipif(
    not (PARITY / "dbconformer" / "keys.txt").is_file(),
    reason=f"parity fixtures not found in {PARITY} (../shared/reference/parity is only present "
           "on the project's CI and dev machines; set SIGFORMER_SHARED_REFERENCE to point "
           "elsewhere)")


@dataclass
class Fixture:
    folder: str
    name: str
    config: dict
    official: dict[str, torch.Tensor]
    io: dict[str, torch.Tensor]

    def build(self, **overrides) -> torch.nn.Module:
        torch.manual_seed(0)
        kwargs = {**self.config["sigformer"]["kwargs"], **overrides}
        return create_model(self.config["sigformer"]["name"], **kwargs).eval()

    def inputs(self) -> dict[str, torch.Tensor]:
        return {k[len("input."):]: v for k, v in self.io.items() if k.startswith("input.")}

    def outputs(self) -> dict[str, torch.Tensor]:
        return {k[len("output."):]: v for k, v in self.io.items() if k.startswith("output.")}


_CACHE: dict[str, Fixture] = {}


def fixture(folder: str) -> Fixture:
    if folder not in _CACHE:
        from safetensors.torch import load_file

        path = PARITY / folder
        _CACHE[folder] = Fixture(folder, FIXTURES[folder],
                                 json.loads((path / "official_config.json").read_text()),
                                 load_file(str(path / "official_state_dict.safetensors")),
                                 load_file(str(path / "io.safetensors")))
    return _CACHE[folder]


def keys_table(folder: str) -> list[list[str]]:
    """keys.txt rows: official_key, shape, dtype, sigformer_key, rule."""
    lines = (PARITY / folder / "keys.txt").read_text().splitlines()
    return [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]


# --- how each model is run on its fixture's inputs (official layouts in, official out) ---

def _run_dbconformer(m, io, fx):
    features, logits = m(io["x"])
    return {"features": features, "logits": logits}


def _run_tfm_tokenizer(m, io, fx):
    from sigformer.models.eeg.tfm_tokenizer import tfm_spectrogram

    captured = {}
    hooks = [m.freq_transformer.register_forward_hook(
                 lambda mod, args, out: captured.__setitem__("freq_encoded", out)),
             m.temporal_transformer.register_forward_hook(
                 lambda mod, args, out: captured.__setitem__("temporal_encoded", out))]
    try:
        quant_in = m.embed(io["signal"], io["spec"])
    finally:
        for hook in hooks:
            hook.remove()
    out = m.quantizer(quant_in)
    return {"reconstruction": m.decoder_head(m.decoder(out.quantized)).transpose(1, 2),
            "indices": out.indices, "quant_out": out.quantized, "quant_in": quant_in,
            **captured, "spec": tfm_spectrogram(io["signal"]),
            "encode_ids": m.encode(io["signal"][:, None]).ids}


def _run_tfm_encoder(m, io, fx):
    return {"logits": m(io["ids"])}


def _run_duin_cls(m, io, fx):
    x = io["X"].transpose(1, 2)  # official time-major -> (B, C, T)
    y_pred = m(x, io["subj"])
    m.sigmoid_head = False
    try:
        logits = m(x, io["subj"])
    finally:
        m.sigmoid_head = True
    return {"y_pred": y_pred, "logits": logits}


def _run_duin_vqvae(m, io, fx):
    x = io["X"].transpose(1, 2)
    recon, vq_out = m(x, io["subj"])
    losses = m.loss(x, io["subj"], io["channel_mask"])
    return {"X_reconstr": recon.transpose(1, 2), "loss_vq": vq_out.loss,
            "loss_rgs": losses["reconstruction"], "loss_total": losses["loss"],
            "E_vq": m.encode(x, io["subj"])[0], "codes": m.code_indices(x, io["subj"])}


def _run_duin_mae(m, io, fx):
    x, mask = io["X"].transpose(1, 2), io["mask"]
    targets = io["c_true"].argmax(-1)
    return {"c_pred": m.predict_codes(x, mask, io["subj"]),
            "loss_cls": m.loss(x, targets, io["subj"], mask=mask)["loss"]}


def _run_mossformer(m, io, fx):
    return {"est_source": m(io["mix"]).permute(0, 2, 1)}  # official (batch, time, speaker)


def _run_deftan2(m, io, fx):
    return {"y": m(io["x"])}


def _run_adafortitran(m, io, fx):
    pilots = torch.view_as_complex(io["pilots"].contiguous())
    stats = torch.cat([io["snr"], io["delay_spread"], io["doppler"]], dim=1)
    return {"H": torch.view_as_real(m(pilots, stats))}


RUNNERS: dict[str, Callable] = {
    "dbconformer": _run_dbconformer, "tfm_tokenizer": _run_tfm_tokenizer,
    "tfm_encoder": _run_tfm_encoder, "duin_cls": _run_duin_cls, "duin_vqvae": _run_duin_vqvae,
    "duin_mae": _run_duin_mae, "mossformer": _run_mossformer, "deftan2": _run_deftan2,
    "adafortitran": _run_adafortitran,
}
# outputs computed by sigformer alone, checked against another stored tensor
DERIVED = {"spec": "spec", "encode_ids": "indices"}
# a pair of same-shape tensors that the forward depends on (negative control)
SWAPS = {
    "dbconformer": ("temporal_transformer.blocks.0.norm1.weight",
                    "temporal_transformer.blocks.0.norm2.weight"),
    "tfm_tokenizer": ("freq_transformer.blocks.0.norm1.weight",
                      "freq_transformer.blocks.0.norm2.weight"),
    "tfm_encoder": ("transformer.blocks.0.norm1.weight", "transformer.blocks.0.norm2.weight"),
    "duin_cls": ("backbone.encoder.blocks.0.norm1.weight",
                 "backbone.encoder.blocks.0.norm2.weight"),
    # (the encoder's post-LN blocks barely move the cosine codes; the codes' norm does)
    "duin_vqvae": ("vq.post_norm.weight", "vq.post_norm.bias"),
    "duin_mae": ("backbone.encoder.blocks.0.norm1.weight",
                 "backbone.encoder.blocks.0.norm2.weight"),
    "mossformer": ("masker.norm.weight", "masker.stack_norm.weight"),
    "deftan2": ("blocks.0.freq.attention.norm.weight", "blocks.0.freq.feed_forward.norm.weight"),
    "adafortitran": ("encoder.blocks.0.norm1.weight", "encoder.blocks.0.norm2.weight"),
}


def run_fixture(fx: Fixture, state: dict[str, torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
    model = fx.build()
    load_official(model, fx.official if state is None else state, fx.name)
    with torch.no_grad():
        return RUNNERS[fx.folder](model, fx.inputs(), fx)


def max_diffs(fx: Fixture, produced: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |diff| per stored official output (and per derived check)."""
    expected = {**fx.outputs(), **{k: fx.io.get(f"input.{v}", fx.io.get(f"output.{v}"))
                                   for k, v in DERIVED.items() if k in produced}}
    diffs = {}
    for key, want in expected.items():
        got = produced[key]
        assert got.shape == want.shape, f"{fx.folder}.{key}: {tuple(got.shape)} vs " \
                                        f"{tuple(want.shape)}"
        diffs[key] = float((got.double() - want.double()).abs().max())
    return diffs


# --- parity ------------------------------------------------------------------------------

@needs_fixtures
@pytest.mark.parametrize("folder", list(FIXTURES))
def test_official_outputs_reproduced(folder):
    fx = fixture(folder)
    produced = run_fixture(fx)
    assert set(fx.outputs()) <= set(produced), "every stored official output is checked"
    diffs = max_diffs(fx, produced)
    for key, diff in diffs.items():  # integer outputs (code indices) must then be equal
        assert diff <= TOL, f"{folder}.{key}: max |diff| {diff:.2e} > {TOL}"


@needs_fixtures
@pytest.mark.parametrize("folder", list(FIXTURES))
def test_negative_control_swapped_tensors_move_outputs(folder):
    fx = fixture(folder)
    a, b = SWAPS[folder]
    state = convert_state_dict(fx.name, fx.official)
    assert state[a].shape == state[b].shape and not torch.equal(state[a], state[b])
    state[a], state[b] = state[b], state[a]
    model = fx.build()
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        produced = RUNNERS[folder](model, fx.inputs(), fx)
    assert max(max_diffs(fx, produced).values()) > 10 * TOL


@needs_fixtures
@pytest.mark.parametrize("folder", list(FIXTURES))
def test_code_mapping_reproduces_keys_table(folder):
    """The rules in sigformer.models.convert give exactly the fixture's key table."""
    fx = fixture(folder)
    model = fx.build()
    report = load_official(model, fx.official, fx.name)
    state = convert_state_dict(fx.name, fx.official)
    official = fx.official
    for official_key, shape, dtype, sigformer_key, rule in keys_table(folder):
        if official_key == "-":
            assert rule.startswith("keep:") and sigformer_key in report.kept
            continue
        assert list(official[official_key].shape) == json.loads(shape)
        assert str(official[official_key].dtype) == f"torch.{dtype}"
        if rule.startswith("ignore:"):
            assert official_key in report.ignored
        elif rule.startswith("split:"):
            parts = torch.chunk(official[official_key], int(rule.split(":")[1]), dim=0)
            for target, part in zip(sigformer_key.split("|"), parts, strict=True):
                assert torch.equal(state[target], part)
        else:  # copy, copy-shared
            assert torch.equal(state[sigformer_key], official[official_key]), official_key
    assert report.ok and len(report.loaded) == len(model.state_dict()) - len(report.kept)


@needs_fixtures
def test_ignored_tables_equal_what_sigformer_recomputes():
    enc = fixture("tfm_encoder")
    model = enc.build()
    pe = enc.official["temporal_pos_embed.pe"][0]
    # both are float32 sin/cos of position x frequency: at position ~1,000 the argument is only
    # known to ~1e-4 rad in float32, and the vectorised sin/exp kernels torch picks differ by
    # CPU (3e-5 measured on an AVX-512 FP16 machine, 0 on earlier ones): a bound from float32's
    # epsilon, not a tuned number
    atol = 2 * len(pe) * torch.finfo(torch.float32).eps
    torch.testing.assert_close(model.time_encoding[: len(pe)], pe, rtol=0, atol=atol)
    moss = fixture("mossformer")
    model = moss.build()
    torch.testing.assert_close(model.masker.pos_enc.inv_freq,
                               moss.official["mask_net.pos_enc.inv_freq"], rtol=0, atol=1e-7)


@needs_fixtures
def test_duin_classifier_without_unused_blocks_loads_release_weights():
    fx = fixture("duin_cls")
    model = fx.build(with_unused_blocks=False)
    report = load_official(model, fx.official, "duin")
    assert report.ok and any(k.startswith("vq_block.") for k in report.ignored)
    with torch.no_grad():
        y_pred = _run_duin_cls(model, fx.inputs(), fx)["y_pred"]
    torch.testing.assert_close(y_pred, fx.io["output.y_pred"], rtol=0, atol=TOL)


@needs_fixtures
def test_duin_vqvae_parity_needs_the_decoder_time_embedding():
    fx = fixture("duin_vqvae")
    model = fx.build(decoder_time_embedding=False)
    load_official(model, fx.official, fx.name)
    with torch.no_grad():
        recon = _run_duin_vqvae(model, fx.inputs(), fx)["X_reconstr"]
    assert (recon - fx.io["output.X_reconstr"]).abs().max() > 10 * TOL


# --- the converter refuses what does not fit ---------------------------------------------

@needs_fixtures
def test_missing_key_is_refused_and_named():
    fx = fixture("dbconformer")
    official = dict(fx.official)
    del official["temporal_transformer.1.0.fn.1.keys.weight"]
    model = fx.build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConversionError, match=r"1 missing .*temporal_transformer\.blocks\.1"
                                              r"\.attn\.key\.weight"):
        load_official(model, official, "dbconformer")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), \
        "a refused load leaves the model untouched"


@needs_fixtures
def test_extra_key_is_refused_and_named():
    fx = fixture("dbconformer")
    official = {**fx.official, "classifier.extra_head.weight": torch.zeros(2, 80)}
    with pytest.raises(ConversionError, match=r"1 unexpected .*classifier\.extra_head\.weight"):
        load_official(fx.build(), official, "dbconformer")


@needs_fixtures
def test_wrong_shape_is_refused_and_named():
    fx = fixture("dbconformer")
    official = {**fx.official, "classifier.fc.6.weight": torch.zeros(4, 32)}
    with pytest.raises(ConversionError, match=r"shape mismatch: final_layer\.6\.weight "
                                              r"\(classifier\.fc\.6\.weight\): checkpoint "
                                              r"\(4, 32\), model \(2, 32\)"):
        load_official(fx.build(), official, "dbconformer")


@needs_fixtures
def test_wrong_dtype_is_refused():
    fx = fixture("adafortitran")
    official = {**fx.official, "pilot_upsampler.bias": fx.official["pilot_upsampler.bias"].half()}
    with pytest.raises(ConversionError, match=r"dtype mismatch: upsampler\.bias"):
        load_official(fx.build(), official, "adafortitran")


@needs_fixtures
def test_tied_copies_must_agree():
    fx = fixture("mossformer")
    key = "mask_net.mdl.att_mdl.mossformerM.layers.2.rotary_pos_emb.freqs"
    official = {**fx.official, key: fx.official[key] * 1.5}
    with pytest.raises(ConversionError, match=r"tied copies .*layers\.2\.rotary_pos_emb.* "
                                              r"of 'masker\.rotary\.freqs' disagree"):
        convert_state_dict("mossformer", official)


@needs_fixtures
def test_non_strict_loads_what_fits_and_reports():
    from sigformer.models.weights import PretrainedLoadWarning

    fx = fixture("dbconformer")
    official = dict(fx.official)
    del official["classifier.fc.6.bias"]
    official["bogus"] = torch.zeros(3)
    model = fx.build()
    fresh_bias = model.final_layer[6].bias.detach().clone()
    with pytest.warns(PretrainedLoadWarning, match="final_layer.6.bias"):
        report = load_official(model, official, "dbconformer", strict=False)
    assert not report.ok
    assert report.missing == ["final_layer.6.bias"] and report.unexpected == ["bogus -> bogus"]
    assert torch.equal(model.final_layer[6].bias, fresh_bias)
    torch.testing.assert_close(model.final_layer[6].weight, official["classifier.fc.6.weight"])


@needs_fixtures
def test_non_strict_refuses_a_checkpoint_of_which_nothing_fits():
    fx = fixture("dbconformer")
    with pytest.raises(ConversionError, match="none of the official checkpoint's tensors fit"):
        load_official(fx.build(), {"bogus": torch.zeros(3)}, "dbconformer", strict=False)


@needs_fixtures
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drop=st.sets(st.integers(0, 91), max_size=6),
       prefix=st.sampled_from(["", "module.", "model.", "module.model."]))
def test_report_lists_exactly_the_dropped_keys(drop, prefix):
    """Property: whatever keys are dropped and however the dict is wrapped, the report names
    precisely their sigformer targets as missing and loads everything else."""
    fx = fixture("dbconformer")
    keys = sorted(fx.official)
    dropped = {keys[i] for i in drop}
    official = {prefix + k: v for k, v in fx.official.items() if k not in dropped}
    full = convert_state_dict("dbconformer", fx.official)
    targets = set(convert_state_dict("dbconformer", {k: fx.official[k] for k in dropped}))
    report = load_official(fx.build(), official, "dbconformer", strict=False)
    assert set(report.missing) == targets
    assert len(report.loaded) == len(full) - len(targets) and not report.unexpected


def test_unknown_model_is_refused():
    with pytest.raises(ConversionError, match="no official-checkpoint converter for 'clst'"):
        convert_state_dict("clst", {})
    assert set(CONVERTIBLE) == set(FIXTURES.values())


# --- reading official files --------------------------------------------------------------

@needs_fixtures
def test_reads_torch_containers_with_wrapper_prefix(tmp_path):
    fx = fixture("adafortitran")
    path = tmp_path / "best.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in fx.official.items()}},
               path)
    official = read_official_checkpoint(path, "adafortitran")
    assert load_official(fx.build(), official, "adafortitran").ok


@needs_fixtures
def test_reads_mossformer_release_folder(tmp_path):
    fx = fixture("mossformer")
    for file, prefix in (("encoder.bin", "encoder."), ("decoder.bin", "decoder."),
                         ("masknet.bin", "mask_net.")):
        torch.save({k[len(prefix):]: v for k, v in fx.official.items() if k.startswith(prefix)},
                   tmp_path / file)
    official = read_official_checkpoint(tmp_path, "mossformer")
    assert official.keys() == fx.official.keys()
    model = fx.build()
    assert load_official(model, tmp_path, "mossformer").ok


def test_reads_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = {"pos_embedding_temporal": torch.randn(1, 8, 40)}
    save_file(state, str(tmp_path / "w.safetensors"))
    got = read_official_checkpoint(tmp_path / "w.safetensors", "dbconformer")
    assert torch.equal(got["pos_embedding_temporal"], state["pos_embedding_temporal"])


class _Pickled:  # stands for a whole model saved with torch.save(model)
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model": _Pickled()}, path)
    with pytest.raises(ConversionError, match=r"weights_only=True"):
        read_official_checkpoint(path, "dbconformer")


def test_unusable_files_are_refused(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"\x00")
    with pytest.raises(ConversionError, match=r"unsupported checkpoint file 'weights\.h5'"):
        read_official_checkpoint(tmp_path / "weights.h5", "deftan2")
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "opt.pt")
    with pytest.raises(ConversionError, match="no state dict found"):
        read_official_checkpoint(tmp_path / "opt.pt", "deftan2")
    with pytest.raises(ConversionError, match="only folder layout understood is MossFormer"):
        read_official_checkpoint(tmp_path, "deftan2")
    with pytest.raises(FileNotFoundError):
        read_official_checkpoint(tmp_path / "absent.pt", "deftan2")


@needs_fixtures
def test_official_tfm_codebook_survives_training_with_kmeans_init():
    # a k-means quantizer starts uninitialised and would replace the release's codebook
    # with k-means of the first training batch
    fx = fixture("tfm_tokenizer")
    model = fx.build(codebook_init="kmeans")
    assert model.quantizer.initted.item() == 0
    load_official(model, fx.official, "tfm_tokenizer")
    assert model.quantizer.initted.item() == 1
    # one training step moves the loaded codebook by its EMA update only, as for a model
    # built with the uniform init (initialised from the start)
    plain = fx.build(codebook_init="uniform")
    load_official(plain, fx.official, "tfm_tokenizer")
    z = torch.randn(4, 16, model.quantizer.codebook.shape[1])
    for m in (model, plain):
        m.train()
        with torch.no_grad():
            m.quantizer(z)
    torch.testing.assert_close(model.quantizer.codebook, plain.quantizer.codebook)
