"""``sigformer export --format onnx`` used to report ``"exporter": "torchscript"``, which reads
as a contradiction: the "exporter" now names the tool that wrote the file, and ``--format``
says what each value writes and which is the default."""

from __future__ import annotations

import json

import pytest
import torch

from sigformer.bundle import Bundle
from sigformer.cli import build_parser, main
from sigformer.export import ONNX_EXPORTER_NAMES
from sigformer.models import create_model
from sigformer.spec import SignalSpec


@pytest.fixture()
def iq_bundle(tmp_path):
    torch.manual_seed(0)
    spec = SignalSpec.iq(1e6, frame_length=128)
    return Bundle(model=create_model("kd_cnn", n_outputs=3).eval(), task="classify",
                  input_spec=spec, labels=["a", "b", "c"]).save(tmp_path / "b")


def _export(capsys, bundle, out, *extra) -> dict:
    assert main(["export", str(bundle), "--out", str(out), *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_onnx_export_names_the_onnx_exporter(tmp_path, capsys, iq_bundle):
    pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")
    printed = _export(capsys, iq_bundle, tmp_path / "o")  # --format onnx is the default
    assert printed["format"] == "onnx"
    assert printed["exporter"] == ONNX_EXPORTER_NAMES["torchscript"]
    assert printed["exporter"].startswith("torch.onnx")  # never a bare "torchscript"
    assert printed["onnx_exporter"] == "torchscript"  # the exporter= value, to pass back
    written = json.loads((tmp_path / "o" / "preprocess.json").read_text())
    assert written["exporter"] == printed["exporter"]


def test_torchscript_export_names_its_tracer(tmp_path, capsys, iq_bundle):
    printed = _export(capsys, iq_bundle, tmp_path / "t", "--format", "torchscript")
    assert printed["format"] == "torchscript" and printed["exporter"] == "torch.jit.trace"
    assert printed["onnx_exporter"] is None


def test_format_help_gives_the_choices_and_the_default():
    export = build_parser()._subparsers._group_actions[0].choices["export"]
    fmt = next(a for a in export._actions if "--format" in a.option_strings)
    assert fmt.default == "onnx" and fmt.help and "default" in fmt.help
    for choice in fmt.choices:
        assert choice in fmt.help
