"""scripts/train_amr.py --init: the ClST fine-tunes a trained bundle (the same preset) on the
generator's next epochs; the start is recorded, checked on resume and counted on the card."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from sigformer.checkpoint import load_checkpoint, read_config
from tests.repo_scripts import load_script

ARGS = ["--frames", "64", "--epochs", "1", "--batch-size", "32", "--test-per-condition", "1",
        "--val-per-condition", "0", "--threads", "1", "--clst-preset", "tiny", "--students",
        "", "--baselines", "", "--log-every", "0"]


def train(out: Path, *extra: str) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = load_script("scripts/train_amr.py").main(["--out", str(out), *ARGS, *extra])
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    """A finished tiny ClST run, packaged as a bundle (the start of the fine-tunes)."""
    root = tmp_path_factory.mktemp("amr_init")
    code, log = train(root / "run")
    assert code == 0
    (root / "run.log").write_text(log)
    return Path(load_script("scripts/package_amr.py").package(
        root / "run", "clst", root / "catalogue", root / "run.log"))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    # parameters only: batch-norm running statistics move in training even at lr 0
    sa, sb = dict(a.named_parameters()), dict(b.named_parameters())
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_fine_tune_starts_from_the_bundle_and_records_it(first, tmp_path):
    start, _ = load_checkpoint(first)
    # lr 0: AdamW moves nothing, so the result is exactly where the fine-tune started
    code, log = train(tmp_path / "ft", "--init", str(first), "--lr", "0")
    assert code == 0 and "a fine-tune" in log
    tuned, config = load_checkpoint(tmp_path / "ft" / "clst")
    assert same_weights(tuned, start)
    init = config["extra"]["init"]
    assert init["source"] == str(first) and init["epochs"] == 1 and init["frames_seen"] == 64
    assert init["sha256"] == read_config(first)["files"]["model.safetensors"]["sha256"]
    # without --init the same run starts elsewhere
    code, _ = train(tmp_path / "scratch", "--lr", "0")
    assert not same_weights(load_checkpoint(tmp_path / "scratch" / "clst")[0], start)


def test_the_fine_tune_draws_the_epochs_after_its_start():
    from sigformer.data.modgen import RML2016_CLASSES
    from sigformer.recipes.amr import GeneratedFrames

    plain = GeneratedFrames(RML2016_CLASSES, batch_size=8, seed=3)
    shifted = GeneratedFrames(RML2016_CLASSES, batch_size=8, seed=3, epoch_offset=2)
    x_shift, y_shift = shifted.batch(0, epoch=0)
    x_later, y_later = plain.batch(0, epoch=2)
    assert torch.equal(x_shift, x_later) and torch.equal(y_shift, y_later)
    assert not torch.equal(x_shift, plain.batch(0, epoch=0)[0])


def test_a_resume_must_name_the_same_start(first, tmp_path):
    assert train(tmp_path / "ft", "--init", str(first), "--epochs", "2")[0] == 0
    folder = tmp_path / "ft" / "clst"
    with pytest.raises(SystemExit, match=r"fine-tuned from .* this run has no --init"):
        train(tmp_path / "ft", "--epochs", "2", "--resume")
    scratch = tmp_path / "scratch"
    assert train(scratch, "--epochs", "2")[0] == 0
    with pytest.raises(SystemExit, match=r"trained from scratch, this run starts from --init"):
        train(scratch, "--epochs", "2", "--resume", "--init", str(first))
    assert read_config(folder)["extra"]["init"]["source"] == str(first)


def test_another_preset_or_teacher_together_is_refused(first, tmp_path):
    args = ["--out", str(tmp_path / "x"), *ARGS[:-8], "--clst-preset", "small", "--students",
            "", "--baselines", "", "--log-every", "0", "--init", str(first)]
    with pytest.raises(SystemExit, match=r"differs in \['.*'\]: e\.g\. another --clst-preset"):
        load_script("scripts/train_amr.py").main(args)
    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            train(tmp_path / "y", "--init", str(first), "--teacher", str(first))
    assert "exclude each other" in err.getvalue()


def test_the_card_counts_the_start(first, tmp_path):
    code, log = train(tmp_path / "ft", "--init", str(first), "--epochs", "2")
    assert code == 0
    (tmp_path / "ft.log").write_text(log)
    folder = load_script("scripts/package_amr.py").package(
        tmp_path / "ft", "clst", tmp_path / "catalogue", tmp_path / "ft.log")
    prov = read_config(folder)["provenance"]
    assert prov["data"]["frames_seen"] == 64 + 2 * 64
    assert prov["data"]["epochs_total"] == 3
    assert prov["fine_tuned_from"].startswith(f"{first} (sha256 ")
    assert "then 2 more epochs x 64 frames" in prov["fine_tuned_from"]
    # the human-readable card says it too (a provenance field never vanishes from it)
    card = (Path(folder) / "MODEL_CARD.md").read_text()
    assert f"- fine tuned from: {prov['fine_tuned_from']}" in card
    assert "training_log_tail" not in card and "training log tail" not in card
    assert "the start: " in prov["training_time"]
    assert "fine-tuned: it saw 192 frames" in prov["limitations"]
    # the start's card, measured on the same test grid, joins the table
    start = read_config(first)["provenance"]["results"]
    assert prov["results"]["clst [start]"] == start["clst"]
    assert prov["data"]["seed"] == 0


def test_the_start_card_is_left_out_when_its_test_grid_differs(first, tmp_path):
    code, log = train(tmp_path / "ft", "--init", str(first), "--test-per-condition", "2")
    assert code == 0
    folder = load_script("scripts/package_amr.py").package(
        tmp_path / "ft", "clst", tmp_path / "catalogue", None)
    assert not any("[start]" in k for k in read_config(folder)["provenance"]["results"])


def test_a_fine_tune_of_a_fine_tune_draws_after_all_earlier_epochs(first, tmp_path):
    code, log = train(tmp_path / "ft", "--init", str(first), "--epochs", "2")
    assert code == 0
    second = load_script("scripts/package_amr.py").package(
        tmp_path / "ft", "clst", tmp_path / "catalogue", None)
    assert train(tmp_path / "ft2", "--init", str(second))[0] == 0
    init = read_config(tmp_path / "ft2" / "clst")["extra"]["init"]
    assert init["epochs"] == 3 and init["frames_seen"] == 3 * 64  # 1 + 2: epoch 3 is next
    third = load_script("scripts/package_amr.py").package(
        tmp_path / "ft2", "clst", tmp_path / "catalogue2", None)
    prov = read_config(third)["provenance"]
    assert prov["data"]["epochs_total"] == 4 and prov["data"]["frames_seen"] == 4 * 64
    assert not any(k.endswith("[start] [start]") for k in prov["results"])
    # the chained start's own two times are named as its parts, not nested as "this"
    assert prov["training_time"].count("this fine-tune") == 1


def test_the_start_card_is_left_out_when_the_start_is_gone_or_replaced(first, tmp_path):
    import shutil

    start = tmp_path / "start"
    shutil.copytree(first, start)
    code, log = train(tmp_path / "ft", "--init", str(start))
    assert code == 0
    package = load_script("scripts/package_amr.py").package
    tuned = package(tmp_path / "ft", "clst", tmp_path / "cat1", None)
    assert "clst [start]" in read_config(tuned)["provenance"]["results"]
    # the start's name now holds other weights (re-shipped): their card is another model's
    shutil.rmtree(start)
    shutil.copytree(tuned, start)
    replaced = package(tmp_path / "ft", "clst", tmp_path / "cat2", None)
    assert not any("[start]" in k for k in read_config(replaced)["provenance"]["results"])
    shutil.rmtree(start)  # gone: the card names it but has no rows of it
    gone = package(tmp_path / "ft", "clst", tmp_path / "cat3", None)
    prov = read_config(gone)["provenance"]
    assert not any("[start]" in k for k in prov["results"])
    assert prov["fine_tuned_from"].startswith(str(start))
