"""The command line takes Ref-AVS names as they are: 344 official video ids begin with ``-`` or ``--``."""

from __future__ import annotations

import pytest

from aurora_rl.cli import attach_dash_values, build_parser, main


def test_an_option_value_that_begins_with_a_dash_is_taken_as_the_value(capsys):
    parser = build_parser()
    argv = ["infer", "--ckpt", "ckpt", "--frames", "-5-tOp4t_kU_0_10000/frames", "--audio",
            "--KCIeTv6PM_14000_24000/audio.wav", "--text", "the dog ."]
    args = parser.parse_args(attach_dash_values(parser, argv))
    assert (args.frames, args.audio) == ("-5-tOp4t_kU_0_10000/frames", "--KCIeTv6PM_14000_24000/audio.wav")
    # flags and options keep their meaning: a flag after an option is not its value
    kept = ["train", "sft", "--config", "a.yaml", "--resume"]
    assert attach_dash_values(parser, kept) == kept
    assert parser.parse_args(attach_dash_values(parser, [*argv, "--seed", "-1"])).seed == -1
    # a negative number reaches its option, whose own check refuses it (not "expected one argument")
    with pytest.raises(SystemExit):
        parser.parse_args(attach_dash_values(parser, ["eval", "--ckpt", "c", "--data", "d", "--max-samples", "-1"]))
    assert "argument --max-samples: expected an integer >= 1, got -1" in capsys.readouterr().err


def test_a_dash_vid_folder_reaches_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["infer", "--ckpt", str(tmp_path), "--frames", "--KCIeTv6PM_14000_24000/frames",
                 "--audio", "--KCIeTv6PM_14000_24000/audio.wav", "--text", "the cat ."])
    err = capsys.readouterr().err
    assert code == 1 and "aurora-rl: error:" in err  # the command's own error, not argparse's usage
    assert "expected one argument" not in err
