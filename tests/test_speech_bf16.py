"""bf16 autocast switch of the speech training recipe (issue 13): ``SpeechRecipe(bf16=True)`` /
``scripts/train_speech.py --bf16`` runs the forward pass of each training step under bf16
autocast, with the loss, backward and optimiser in float32; off, a step is the published fp32
step, bit for bit. Tiny presets on fixed synthetic batches, one thread."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from sigformer.models import create_model
from sigformer.recipes.speech import (
    DEFTAN2,
    MOSSFORMER,
    SpeechRecipe,
    batch_loss,
    load_train_state,
    make_optimizer,
    make_scheduler,
    save_train_state,
    train_step,
)
from sigformer.speech.metrics import pit_loss
from tests.repo_scripts import load_script

RATE = 8000


def _separation_batch(n: int = 2, samples: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 'voices' (harmonic tones with an envelope) and their mixture, fixed by a seed."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(samples) / RATE
    sources = []
    for f0 in (120.0, 210.0):
        phase = torch.rand(n, 1, generator=g) * 6
        voice = sum(torch.sin(2 * torch.pi * f0 * k * t + phase) / k for k in range(1, 5))
        sources.append(voice * (0.6 + 0.4 * torch.sin(2 * torch.pi * 3 * t + phase)))
    targets = torch.stack(sources, 1)  # (n, 2, samples)
    return targets.sum(1), targets


def _enhancement_batch(n: int = 2, n_mics: int = 4, samples: int = 2048
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """A target 'voice', delayed copies of it at each microphone plus noise."""
    g = torch.Generator().manual_seed(1)
    t = torch.arange(samples) / RATE
    voice = sum(torch.sin(2 * torch.pi * 150.0 * k * t) / k for k in range(1, 5))
    voice = voice * (0.6 + 0.4 * torch.sin(2 * torch.pi * 4 * t))
    target = voice.expand(n, 1, samples).clone()
    mics = torch.stack([torch.roll(voice, m) for m in range(n_mics)]).expand(n, -1, -1)
    return mics + 0.5 * torch.randn(n, n_mics, samples, generator=g), target


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "mossformer":
        return create_model("mossformer", "tiny", sample_rate=RATE)
    return create_model("deftan2", "tiny", n_mics=4, sample_rate=RATE)


def _record_layer_dtypes(model: nn.Module) -> tuple[set, list]:
    """Output dtypes of every Linear / convolution while the hooks are on (what the matmuls
    computed in)."""
    seen: set = set()
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, layers)]
    return seen, hooks


def _plain_step(model: nn.Module, batch, optimizer, recipe: SpeechRecipe) -> float:
    """The published fp32 MossFormer step written out by hand (no recipe helpers)."""
    model.train()
    inputs, targets = batch
    loss = pit_loss(model(inputs), targets, recipe.loss_threshold)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
    optimizer.step()
    return loss.item()


def test_bf16_off_is_the_plain_fp32_step_bit_for_bit(one_thread):
    batch = _separation_batch()
    recipe = MOSSFORMER.with_options(lr=1e-3)
    assert recipe.bf16 is False  # the published recipe is fp32
    model = _model("mossformer")
    twin = copy.deepcopy(model)
    opt, twin_opt = make_optimizer(model, recipe), make_optimizer(twin, recipe)
    for _ in range(2):  # the second step also compares the optimiser state
        torch.manual_seed(7)  # the same dropout draws
        loss = train_step(model, batch, opt, recipe)
        torch.manual_seed(7)
        expected = _plain_step(twin, batch, twin_opt, recipe)
        assert loss == expected
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), name
    seen, hooks = _record_layer_dtypes(model)
    train_step(model, batch, opt, recipe)
    for hook in hooks:
        hook.remove()
    assert seen == {torch.float32}


@pytest.mark.parametrize("name, loss", [("mossformer", "pit_si_snr"), ("deftan2", "si_sdr"),
                                        ("deftan2", "pcm")])
def test_bf16_step_autocasts_the_forward_and_keeps_the_loss_float32(name, loss, one_thread):
    model = _model(name)
    batch = _separation_batch() if name == "mossformer" else _enhancement_batch()
    recipe = (MOSSFORMER if name == "mossformer" else DEFTAN2).with_options(loss=loss, bf16=True)
    seen, hooks = _record_layer_dtypes(model)
    value = batch_loss(model, batch, recipe)
    assert torch.bfloat16 in seen  # the matmuls / convolutions ran in bf16
    assert value.dtype == torch.float32 and value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for hook in hooks:
        hook.remove()
    # the weights and their gradients stay float32 (the checkpoint format does not change)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
    # and without the switch the same model's layers compute in float32
    seen, hooks = _record_layer_dtypes(model)
    with torch.no_grad():
        batch_loss(model, batch, recipe.with_options(bf16=False))
    for hook in hooks:
        hook.remove()
    assert seen == {torch.float32}


# steps and learning rate per case: enough for a clear drop on one fixed batch, well under a
# second each on one thread (measured, eval-mode fp32 loss before -> after: PIT SI-SNR 27.4 ->
# 3.1 dB, -SI-SDR 21.2 -> -3.5 dB, PCM 1.13 -> 0.97)
TRAINING_CASES = [("mossformer", "pit_si_snr", 1e-3, 6), ("deftan2", "si_sdr", 3e-3, 6),
                  ("deftan2", "pcm", 3e-3, 6)]


@pytest.mark.parametrize("name, loss, lr, steps", TRAINING_CASES)
def test_bf16_steps_reduce_the_loss_on_a_fixed_batch(name, loss, lr, steps, one_thread):
    model = _model(name)
    batch = _separation_batch() if name == "mossformer" else _enhancement_batch()
    recipe = (MOSSFORMER if name == "mossformer" else DEFTAN2).with_options(
        loss=loss, lr=lr, bf16=True)
    optimizer = make_optimizer(model, recipe)
    torch.manual_seed(0)
    losses = [train_step(model, batch, optimizer, recipe) for _ in range(steps)]
    assert all(isinstance(v, float) and v == v for v in losses), losses  # none skipped, no NaN
    # the loss of the initial and the trained weights, measured the same way (eval mode: no
    # dropout; fp32) so that only the weights differ
    measured = recipe.with_options(bf16=False)
    with torch.no_grad():
        start = float(batch_loss(_model(name).eval(), batch, measured))
        end = float(batch_loss(model.eval(), batch, measured))
    assert end < start, (start, end, losses)


def test_a_resume_may_switch_bf16_but_not_the_rest(tmp_path, one_thread):
    from sigformer.checkpoint import CheckpointError

    recipe = MOSSFORMER
    model = _model("mossformer")
    optimizer = make_optimizer(model, recipe)
    save_train_state(tmp_path / "run", model, optimizer, make_scheduler(optimizer, recipe), 3,
                     [], recipe)
    for now in (recipe.with_options(bf16=True), recipe):
        fresh = _model("mossformer")
        opt = make_optimizer(fresh, now)
        step, _ = load_train_state(tmp_path / "run", fresh, opt, make_scheduler(opt, now), now)
        assert step == 3
    changed = recipe.with_options(bf16=True, lr=1e-3)
    opt = make_optimizer(model, changed)
    with pytest.raises(CheckpointError, match=r"lr 0\.00015 -> 0\.001\..*--lr.*only bf16 may "
                                              r"change on resume"):
        load_train_state(tmp_path / "run", model, opt, make_scheduler(opt, changed), changed)


def _train_script():
    return load_script("scripts/train_speech.py")


def _corpus(root: Path) -> Path:
    """Twelve one-second 'speakers' and one noise file (enough for the speaker split)."""
    from sigformer.data.mixtures import synthetic_voices
    from sigformer.speech.audio import write_audio

    voices = iter(synthetic_voices(13, 1.0, RATE, seed=3))
    for i in range(12):
        write_audio(root / f"spk{i}_snt1.wav", next(voices), RATE)
    write_audio(root / "noise" / "hum.wav", next(voices), RATE)
    return root


@pytest.mark.parametrize("task", ["separate", "enhance"])
def test_cli_flag_reaches_the_recipe_and_its_records(task, tmp_path, one_thread):
    import json

    script = _train_script()
    data = _corpus(tmp_path / "corpus")
    common = ["--task", task, "--data", str(data), "--out", str(tmp_path / "run"), "--preset",
              "tiny", "--batch-size", "1", "--seconds", "0.25", "--n-val", "1", "--workers",
              "0", "--sample-rate", str(RATE), "--steps", "1", "--val-every", "1"]
    assert script.parse_args(common).bf16 is False
    assert script.build(script.parse_args(common))[1].bf16 is False
    args = script.parse_args(common + ["--bf16"])
    recipe = script.build(args)[1]
    assert recipe.bf16 is True and "bf16=True" in repr(recipe)  # the log line / card shows it
    if task == "enhance":
        return  # one end-to-end run is enough: the records do not depend on the task
    assert script.main(common + ["--bf16"]) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["extra"]["recipe"]
    assert recorded["bf16"] is True
    assert json.loads((tmp_path / "run-split.json").read_text())["args"]["bf16"] is True
    # a resumed run may switch it off; the checkpoint then records the recipe it ran with
    assert script.main(common[:-4] + ["--steps", "2", "--val-every", "1", "--resume"]) == 0
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["extra"]
    assert recorded["step"] == 2 and recorded["recipe"]["bf16"] is False
