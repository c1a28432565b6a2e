"""One SigMF annotation writer: ``sigformer stream --out`` (``SigMFAnnotationSink``) and
``classify-iq --out`` (``write_annotations``) write the same kind of recording.

The review found the stream's file metadata-only (no data, no ``core:dataset``), its source
global fields dropped (sha512, description, licence, author), ``core:version`` 1.2.0 and the
extension at 0.1.0 where classify-iq keeps the source's version and declares 1.0.0, and no
``core:generator`` on its annotations, so a later ``write_annotations(replace_generator=
"sigformer")`` could not replace them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sigformer.bundle import Bundle
from sigformer.data.io import DataError
from sigformer.data.sigmf_io import (
    EXTENSION,
    AnnotationWriter,
    SigMFAnnotation,
    read_sigmf,
    validate_metadata,
    write_annotations,
    write_sigmf,
)
from sigformer.rf.amr import classify_sigmf
from sigformer.streaming import SigMFAnnotationSink, SigMFSource
from sigformer.streaming.app import stream_bundle

L = 128
SOURCE_FIELDS = {"core:description": "bench capture", "core:author": "lab <lab@example.org>",
                 "core:license": "CC-BY-4.0"}


def _capture(folder: Path, frames: int = 12) -> Path:
    """A generated capture with a SHA-512, author/description/licence and one annotation
    made by someone else (kept by both writers)."""
    rng = np.random.default_rng(4)
    iq = (rng.standard_normal(L * frames) + 1j * rng.standard_normal(L * frames)
          ).astype(np.complex64)
    foreign = SigMFAnnotation(0, L * 2, "carrier", extra={"core:generator": "someone"})
    return write_sigmf(folder / "cap", iq, sample_rate=1e6, center_frequency=433.92e6,
                       annotations=[foreign], global_info=dict(SOURCE_FIELDS))


def _stream(bundle_path: Path, capture: Path, out: Path, **kwargs) -> Path:
    bundle = Bundle.load(bundle_path)
    source = SigMFSource(capture)
    sink = SigMFAnnotationSink(out, sample_rate=source.sfreq, labels=bundle.labels,
                               recording=capture, **kwargs)
    stream_bundle(bundle, source, [sink], log=lambda *a: None)
    return sink.path


def _meta(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def test_stream_and_classify_iq_write_the_same_recording(tmp_path, iq_bundle):
    capture = _capture(tmp_path)
    source_global = _meta(capture)["global"]
    streamed = _stream(iq_bundle, capture, tmp_path / "s" / "streamed.sigmf-meta")
    classified = Path(classify_sigmf(capture, Bundle.load(iq_bundle), min_power_db=None,
                                     out_meta=tmp_path / "c" / "labels.sigmf-meta")["meta"])
    s, c = _meta(streamed), _meta(classified)
    assert s["global"] == c["global"]  # one writer: the same global object
    for key, value in {**SOURCE_FIELDS, "core:sha512": source_global["core:sha512"],
                       "core:version": source_global["core:version"]}.items():
        assert s["global"][key] == value
    assert [e for e in s["global"]["core:extensions"] if e["name"] == "sigformer"] == \
        [EXTENSION]
    for meta in (s, c):
        ours = [a for a in meta["annotations"] if a["core:label"] != "carrier"]
        assert ours and all(a["core:generator"] == "sigformer" for a in ours)
        assert [a["core:generator"] for a in meta["annotations"]
                if a["core:label"] == "carrier"] == ["someone"]  # others' annotations kept
        validate_metadata(meta)
    # both are complete recordings elsewhere: the data was copied and its checksum holds
    for path in (streamed, classified):
        assert path.with_name(path.name.replace("-meta", "-data")).is_file()
        assert len(read_sigmf(path).samples) == L * 12
    # the same annotations too: runs of the 12 frames, merged by one rule
    ours = [[{k: v for k, v in a.items() if k not in ("sigformer:confidence", "core:comment")}
             for a in meta["annotations"] if a["core:label"] != "carrier"] for meta in (s, c)]
    assert ours[0] == ours[1]
    assert sum(a["sigformer:frames"] for a in ours[0]) == 12


def test_a_later_run_replaces_the_streamed_annotations(tmp_path, iq_bundle):
    capture = _capture(tmp_path)
    streamed = _stream(iq_bundle, capture, tmp_path / "s" / "streamed")
    assert streamed.name == "streamed.sigmf-meta"
    again = SigMFAnnotation(L, L, "QAM", extra={"core:generator": "sigformer"})
    out = write_annotations(streamed, [again], tmp_path / "r" / "again.sigmf-meta",
                            replace_generator="sigformer")
    labels = [(a["core:sample_start"], a["core:label"]) for a in _meta(out)["annotations"]]
    assert labels == [(0, "carrier"), (L, "QAM")]


def test_the_stream_places_the_data_as_classify_iq_does(tmp_path, iq_bundle):
    capture = _capture(tmp_path)
    beside = _stream(iq_bundle, capture, tmp_path / "beside.sigmf-meta")
    assert _meta(beside)["global"]["core:dataset"] == "cap.sigmf-data"
    assert not (tmp_path / "beside.sigmf-data").exists()  # named, not copied
    assert len(read_sigmf(beside).samples) == L * 12
    copied = _stream(iq_bundle, capture, tmp_path / "copied.sigmf-meta", copy_data=True)
    assert "core:dataset" not in _meta(copied)["global"]
    assert (tmp_path / "copied.sigmf-data").read_bytes() == \
        (tmp_path / "cap.sigmf-data").read_bytes()
    with pytest.raises(DataError, match="copy_data=True"):  # before anything streams
        SigMFAnnotationSink(tmp_path / "other" / "x.sigmf-meta", sample_rate=1e6,
                            labels=["a"], recording=capture, copy_data=False)
    with pytest.raises(DataError, match="the input's own metadata"):
        SigMFAnnotationSink(capture, sample_rate=1e6, labels=["a"], recording=capture)


def test_a_stream_without_a_capture_writes_metadata_only(tmp_path, iq_bundle):
    import sigmf

    bundle = Bundle.load(iq_bundle)
    rng = np.random.default_rng(5)
    iq = (rng.standard_normal(L * 4) + 1j * rng.standard_normal(L * 4)).astype(np.complex64)
    from sigformer.streaming.sources import ArraySource

    source = ArraySource(np.stack([iq.real, iq.imag]), 1e6, ["I0", "Q0"], chunk_size=256)
    sink = SigMFAnnotationSink(tmp_path / "live.sigmf-meta", sample_rate=1e6,
                               labels=bundle.labels, center_freq=915e6,
                               global_info={"core:description": "zmq capture"})
    stream_bundle(bundle, source, [sink], log=lambda *a: None)
    meta = _meta(sink.path)
    validate_metadata(meta)
    assert meta["global"]["core:metadata_only"] is True  # SigMF's flag: no dataset
    assert meta["global"]["core:version"] == sigmf.__specification__  # as write_sigmf
    assert meta["global"]["core:description"] == "zmq capture"
    assert EXTENSION in meta["global"]["core:extensions"]
    assert meta["captures"] == [{"core:sample_start": 0, "core:frequency": 915e6}]
    anns = meta["annotations"]  # runs of the 4 frames (no capture: the whole band)
    assert sum(a["sigformer:frames"] for a in anns) == 4
    assert all(a["core:generator"] == "sigformer" for a in anns)
    assert anns[0]["core:freq_lower_edge"] == 915e6 - 0.5e6
    # a later run replaces them, although there is no data file
    out = write_annotations(sink.path, [SigMFAnnotation(0, L, "FSK", extra={
        "core:generator": "sigformer"})], tmp_path / "again.sigmf-meta")
    assert [a["core:label"] for a in _meta(out)["annotations"]] == ["FSK"]


def test_a_bad_annotation_is_refused_when_added_and_nothing_is_written(tmp_path):
    capture = _capture(tmp_path)
    writer = AnnotationWriter(capture, tmp_path / "o" / "x.sigmf-meta")
    with pytest.raises(DataError, match="core:sample_count"):
        writer.add([SigMFAnnotation(0, -5, "ASK")])
    assert not (tmp_path / "o" / "x.sigmf-meta").exists()
    writer.add([SigMFAnnotation(L, L, "ASK")])
    assert [a["core:label"] for a in _meta(writer.flush())["annotations"]] == ["carrier",
                                                                            "ASK"]


def test_predictions_past_the_data_are_cut_at_its_end(tmp_path):
    from sigformer.streaming.runtime import Prediction

    capture = _capture(tmp_path, frames=2)
    sink = SigMFAnnotationSink(tmp_path / "o.sigmf-meta", sample_rate=1e6, labels=["a", "b"],
                               recording=capture)
    probs = np.array([0.9, 0.1])
    with pytest.warns(UserWarning, match="reaches past the last sample"):
        sink.write([Prediction(0, 0.0, probs, "a", 0.0, start=L, length=2 * L),
                    Prediction(1, 0.0, probs, "a", 0.0, start=2 * L, length=L)])
    sink.close()
    ours = [a for a in _meta(sink.path)["annotations"] if a["core:label"] == "a"]
    assert [(a["core:sample_start"], a["core:sample_count"]) for a in ours] == [(L, L)]
    assert len(read_sigmf(sink.path).annotations) == 2  # reads back: nothing past the data
