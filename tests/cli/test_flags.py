"""One name per concept across commands: --quiet everywhere, --batch-size with deprecated aliases."""

from __future__ import annotations

import pytest

from turborec.cli.main import COMMANDS, build_parser


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_quiet(command: str) -> None:
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    assert "--quiet" in sub.format_help()


@pytest.mark.parametrize(
    ("argv", "dest", "value", "old"),
    [
        (["serve", "runs/x", "--max-batch", "32"], "max_batch", 32, "--max-batch"),
        (["serve", "runs/x", "--batch-size", "16"], "max_batch", 16, None),
        (["compress", "runs/x", "--out", "y", "--batch", "8"], "batch_size", 8, "--batch"),
        (["compress", "runs/x", "--out", "y", "--batch-size", "8"], "batch_size", 8, None),
    ],
)
def test_batch_size_is_the_name_and_old_names_warn(
    argv: list[str], dest: str, value: int, old: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    if old is None:
        assert "deprecated" not in err
    else:
        assert f"{old} is deprecated; use --batch-size" in err


def test_deprecated_alias_is_hidden_from_help() -> None:
    sub = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "--batch-size" in text and "--max-batch" not in text


def test_old_alias_still_validates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "runs/x", "--max-batch", "0"])
    assert "positive integer" in capsys.readouterr().err

