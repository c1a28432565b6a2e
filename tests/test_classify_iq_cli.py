"""``--min-power-db`` means the same in ``classify-iq`` and ``sigformer stream``: how many dB
below the loudest frame a frame counts as quiet, a number >= 0. A negative value is refused
by both, with an error naming the option (classify-iq used to take its absolute value while
the stream refused it)."""

from __future__ import annotations

import pytest
from torch import nn

from sigformer.cli import build_parser, main
from sigformer.rf.amr import classify_sigmf

COMMANDS = {"classify-iq": ["classify-iq", "capture.sigmf-meta", "--model", "bundle"],
            "stream": ["stream", "bundle", "--source", "sigmf:capture.sigmf-meta"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", ["-30", "-0.5", "nan", "inf", "loud"])
def test_a_negative_or_non_finite_min_power_db_is_refused(command, value, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*COMMANDS[command], "--min-power-db", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"sigformer {command}: error: argument --min-power-db:" in err
    assert "dB below the loudest frame" in err and ">= 0" in err and repr(value) in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_zero_and_positive_levels_are_taken_as_given(command):
    parser = build_parser()
    for text, value in [("0", 0.0), ("30", 30.0), ("12.5", 12.5)]:
        assert parser.parse_args([*COMMANDS[command], "--min-power-db", text]
                                 ).min_power_db == value


def test_classify_sigmf_refuses_a_negative_level_too():
    # the library no longer leaves it to frame_signal, which takes the absolute value
    with pytest.raises(ValueError, match=r"min_power_db must be a level in dB below the "
                                         r"loudest frame \(>= 0\)"):
        classify_sigmf("capture.sigmf-meta", nn.Identity(), ["a"], min_power_db=-30.0)
