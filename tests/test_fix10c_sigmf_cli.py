"""``sigformer stream ... --out X.sigmf-meta`` and ``sigformer classify-iq ... --out`` write
the same recording (one writer), and ``--copy-data`` says what it does.

The stream half needs ``default_sinks`` (sigformer/streaming/app.py) to hand a ``sigmf:``
source's path to ``SigMFAnnotationSink(recording=...)``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from repo_scripts import cli_json

from sigformer.cli import build_parser
from sigformer.data.sigmf_io import EXTENSION, SigMFAnnotation, write_annotations, write_sigmf

L = 128


def _capture(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    iq = (rng.standard_normal(L * 10) + 1j * rng.standard_normal(L * 10)).astype(np.complex64)
    return write_sigmf(folder / "cap", iq, sample_rate=1e6, center_frequency=433.92e6,
                       global_info={"core:description": "a capture", "core:author": "lab",
                                    "core:license": "CC0-1.0"})


def test_stream_out_and_classify_iq_out_agree(tmp_path, capsys, iq_bundle):
    capture = _capture(tmp_path)
    cli_json(capsys, ["stream", str(iq_bundle), "--source", f"sigmf:{capture}", "--out",
                      str(tmp_path / "s" / "streamed.sigmf-meta")])
    cli_json(capsys, ["classify-iq", str(capture), "--model", str(iq_bundle), "--all-frames",
                      "--out", str(tmp_path / "c" / "labels.sigmf-meta")])
    streamed = json.loads((tmp_path / "s" / "streamed.sigmf-meta").read_text())
    labelled = json.loads((tmp_path / "c" / "labels.sigmf-meta").read_text())
    source = json.loads(capture.read_text())["global"]
    assert streamed["global"] == labelled["global"]
    assert streamed["global"]["core:version"] == source["core:version"]
    assert streamed["global"]["core:sha512"] == source["core:sha512"]
    assert streamed["global"]["core:author"] == "lab"
    assert EXTENSION in streamed["global"]["core:extensions"]
    for meta in (streamed, labelled):
        assert meta["annotations"]
        assert {a["core:generator"] for a in meta["annotations"]} == {"sigformer"}
    assert (tmp_path / "s" / "streamed.sigmf-data").read_bytes() == \
        (tmp_path / "cap.sigmf-data").read_bytes()
    # a later run replaces what the stream wrote
    out = write_annotations(tmp_path / "s" / "streamed.sigmf-meta",
                            [SigMFAnnotation(0, L, "QAM", extra={"core:generator": "sigformer"})],
                            tmp_path / "r.sigmf-meta", replace_generator="sigformer")
    assert [a["core:label"] for a in json.loads(out.read_text())["annotations"]] == ["QAM"]


def test_copy_data_help_says_where_it_matters():
    parser = build_parser()
    iq = parser._subparsers._group_actions[0].choices["classify-iq"]
    text = next(a.help for a in iq._actions if "--copy-data" in a.option_strings)
    assert "own folder" in text and "always copied" in text
