"""``--device`` in the long-training scripts (train_ofdm, train_amr, train_speech) and
``device=`` in their loops: one parser with clear errors, the CPU path unchanged, and - where a
GPU exists (the device check runs this file there) - the AMR and speech loops train on it and
write checkpoints that load and resume on the CPU. The OFDM loop has its own file
(test_ofdm_device.py)."""

from __future__ import annotations

import pytest
import torch
from repo_scripts import load_script

from sigformer.recipes.device import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
SCRIPTS = ("train_ofdm", "train_amr", "train_speech")
MINIMAL = {"train_ofdm": ["--out", "X"], "train_amr": ["--out", "X"],
           "train_speech": ["--out", "X", "--task", "enhance"]}


def test_resolve_device_accepts_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu0", "cuda:x", "", "mps", "meta", "cpu:3"])
def test_resolve_device_names_what_it_expects(name):
    with pytest.raises(ValueError, match=r"expected cpu, cuda or cuda:N"):
        resolve_device(name)


@no_cuda
def test_resolve_device_refuses_cuda_where_there_is_none():
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False .*or pass --device cpu"):
        resolve_device("cuda:0")


@needs_cuda
def test_resolve_device_refuses_a_gpu_index_beyond_the_machine():
    with pytest.raises(ValueError, match=r"this machine has \d+ CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_training_script_refuses_an_unknown_device(script, tmp_path, capsys):
    args = [a.replace("X", str(tmp_path / "run")) for a in MINIMAL[script]]
    with pytest.raises(SystemExit) as stop:
        load_script(f"scripts/{script}.py").parse_args(args + ["--device", "tpu"])
    assert stop.value.code == 2
    assert "--device 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@no_cuda
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_training_script_says_when_cuda_is_missing(script, tmp_path, capsys):
    args = [a.replace("X", str(tmp_path / "run")) for a in MINIMAL[script]]
    with pytest.raises(SystemExit):
        load_script(f"scripts/{script}.py").parse_args(args + ["--device", "cuda"])
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


# --- the loops ----------------------------------------------------------------------------

def _amr_run(tmp_path, device=None, teacher=None, log=lambda line: None, resume=False):
    from sigformer.data.radioml import generate_radioml
    from sigformer.models import create_model
    from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream

    classes = ["BPSK", "QPSK"]
    torch.manual_seed(0)
    model = create_model("kd_cnn", n_outputs=2, n_times=128)
    recipe = StreamRecipe(epochs=2, frames_per_epoch=64, batch_size=32, lr=3e-3)
    val = generate_radioml(2, snrs=[10], classes=classes, normalization="rms", seed=5)
    history = fit_stream(model, GeneratedFrames(classes, None, frame_length=128, seed=0),
                         recipe, teacher=teacher, validation=val, checkpoint_dir=tmp_path,
                         log=log, log_every=1, device=device, resume=resume)
    return model, history


def test_fit_stream_with_device_cpu_trains_bit_for_bit_as_without(tmp_path):
    """device="cpu" is the loop without a device (the one read-back of the step sums too)."""
    runs = [_amr_run(tmp_path / str(device), device=device) for device in (None, "cpu")]
    (a, history_a), (b, history_b) = runs
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))
    assert history_a.epochs[-1]["train_acc"] == history_b.epochs[-1]["train_acc"]
    for row in history_a.epochs:  # 64 frames an epoch: an accuracy is a multiple of 1/64
        assert abs(row["train_acc"] * 64 - round(row["train_acc"] * 64)) < 1e-9


class _StopInEpoch2(Exception):
    pass


def _stop_in_epoch_2(line: str) -> None:
    if "epoch 2/2 step 1/" in line:  # after epoch 1's checkpoint, before epoch 2's
        raise _StopInEpoch2


@needs_cuda
def test_fit_stream_trains_on_cuda_with_a_cpu_teacher_and_resumes_on_the_cpu(tmp_path):
    from sigformer.checkpoint import load_checkpoint
    from sigformer.models import create_model
    from sigformer.training import predict_logits

    teacher = create_model("kd_cnn", n_outputs=2, n_times=128)  # on the CPU: moved too
    with pytest.raises(_StopInEpoch2):
        _amr_run(tmp_path / "run", device="cuda", teacher=teacher, log=_stop_in_epoch_2)
    assert next(teacher.parameters()).is_cuda
    # the GPU run's trainer state (optimiser moments on the GPU) resumes on the CPU
    model, history = _amr_run(tmp_path / "run", device="cpu", teacher=teacher.cpu(),
                              resume=True)
    assert history.done and len(history.epochs) == 2
    model, history = _amr_run(tmp_path / "gpu", device="cuda")
    assert next(model.parameters()).is_cuda and "val_acc" in history.epochs[-1]
    loaded, _ = load_checkpoint(tmp_path / "gpu")
    x = torch.randn(4, 2, 128).numpy()
    assert abs(predict_logits(loaded, x) - predict_logits(model, x)).max() < 1e-4


def _speech_fit(tmp_path, steps, device, resume=False):
    from sigformer.models import create_model
    from sigformer.recipes.speech import MOSSFORMER, fit

    torch.manual_seed(0)
    model = create_model("mossformer", "tiny", sample_rate=8000)
    mix = torch.randn(2, 1600)
    batch = (mix, torch.stack([mix * 0.5, mix * 0.5], 1))
    val = [(mix[0], batch[1][0])]
    return model, fit(model, iter(lambda: batch, None), val, MOSSFORMER, task="separate",
                      steps=steps, out_dir=tmp_path, checkpoint_every=1, val_every=1,
                      log_every=1, resume=resume, log=lambda line: None, device=device)


def test_speech_fit_with_device_cpu_trains_bit_for_bit_as_without(tmp_path):
    (a, _), (b, _) = (_speech_fit(tmp_path / str(device), 2, device) for device in (None, "cpu"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values()))


@needs_cuda
def test_speech_fit_trains_on_cuda_and_resumes_on_the_cpu(tmp_path):
    model, report = _speech_fit(tmp_path / "run", 2, "cuda")
    assert next(model.parameters()).is_cuda and len(report["history"]) == 2
    # the GPU-written trainer state resumes on the CPU (loaded with map_location)
    model, report = _speech_fit(tmp_path / "run", 3, "cpu", resume=True)
    assert not next(model.parameters()).is_cuda and report["steps"] == 3
