"""``turborec compress``: one readable error line and exit 2 for bad requests, before any work;
compressed artifacts that load; the --report table and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from turborec.cli.main import main
from turborec.compress import compress_estimator, load, net_memory


@pytest.fixture(scope="module")
def saved(two_tower: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_tower.save(tmp_path_factory.mktemp("cli") / "teacher")


@pytest.fixture(scope="module")
def saved_int8(two_tower: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compress_estimator(two_tower, quantize="int8").save(tmp_path_factory.mktemp("cli") / "int8")


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path) -> str:
    assert main(["compress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("turborec compress: error:"), err
    assert not out.exists()  # nothing was written
    return err


def test_bad_requests_exit_2_with_one_line_and_no_work(
    saved: Path, saved_int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    base = [str(saved), "--out", str(out)]
    assert "prune must be a fraction strictly between 0 and 1, got 1.5" in fails([*base, "--prune", "1.5"], capsys, out)
    assert "got 0.0" in fails([*base, "--quantize", "int8", "--prune", "0"], capsys, out)
    err = fails([*base, "--quantize", "int8", "--distill", "dim=64"], capsys, out)
    assert "dim=64 is larger than the teacher's 32" in err
    assert "give --data" in fails([*base, "--distill", "dim=8"], capsys, out)
    err = fails([str(saved_int8), "--out", str(out), "--quantize", "int4"], capsys, out)
    assert "cannot make table" in err and "it is a 'int8' table" in err
    assert "nothing to do" in fails(base, capsys, out)
    assert "is the input model" in fails([str(saved), "--out", str(saved), "--quantize", "int8"], capsys, out)
    assert "no artifact directory" in fails([str(tmp_path / "missing"), "--out", str(out), "--quantize", "int8"],
                                            capsys, out)  # fmt: skip


def test_compressed_artifact_loads_and_serves(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small"
    assert main(["compress", str(saved), "--quantize", "int8", "--prune", "0.5", "--out", str(out)]) == 0
    small = load(out)
    assert [r["transform"] for r in small.transforms] == [
        "prune_neurons", "quantize_embeddings", "quantize_embeddings", "quantize_mlp_dynamic"
    ]  # int8 tables, the 1-wide item bias as fp16, int8 MLP layers
    assert small.recommend(small.users.ids[0], N=5)[0].shape == (5,)
    assert np.isfinite(small.score_users(np.arange(4))).all()


def test_report_writes_a_table_and_a_plot(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["compress", str(saved), "--report", "--no-rss", "--batch-size", "32", "--out", str(out)]) == 0
    table = (out / "compression.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split("|")[1].strip() for r in rows] == ["model", "fp16", "int8", "int4", "int8+mlp8", "int4+mlp8+prune0.5"]
    assert (out / "compression.png").stat().st_size > 10_000
    assert load(out / "variants" / "int4").transforms


def test_distill_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from turborec.data import apply_protocol, load_dataset, synthetic
    from turborec.train import TwoTowerRecommender

    data = synthetic(n_users=200, n_items=100, n_interactions=5_000, seed=5)
    csv = tmp_path / "events.csv"
    assert data.timestamp is not None
    lines = ["user,item,timestamp"] + [
        f"{u},{i},{t}" for u, i, t in zip(data.users.decode(data.user), data.items.decode(data.item), data.timestamp)
    ]
    csv.write_text("\n".join(lines) + "\n")
    split = apply_protocol("recbole", load_dataset(csv, "csv", user="user", item="item", timestamp="timestamp"), seed=1)
    teacher = TwoTowerRecommender(dim=32, hidden=(64,), epochs=2, progress=False).fit(split.train, split.valid)
    saved = teacher.save(tmp_path / "teacher")
    out = tmp_path / "student"
    argv = ["compress", str(saved), "--distill", "dim=8", "--distill", "hidden=16", "--quantize", "int8", "--quiet",
            "--data", str(csv), "--format", "csv", "--columns", "user,item,,timestamp", "--seed", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test ndcg@10" in printed and "% kept" in printed
    student = load(out)
    sizes = next(line for line in printed.splitlines() if line.startswith("weights (tables + layers)"))
    ratio = float(sizes.split(": ")[1].split("x smaller")[0])  # the student's weights against the teacher's
    assert ratio == pytest.approx(net_memory(teacher.net).model / net_memory(student.net).model, rel=0.01)
    assert ratio > 4  # dim 32 -> 8 and int8 tables
    assert student.config.dim == 8 and student.config.hidden == (16,) and student.config.embeddings.spec("item").kind == "int8"
    assert student.metrics["test"]["ndcg@10"] > 0


def test_report_of_a_model_without_tables_measures_its_int8_layers(tmp_path: Path) -> None:
    """A Mult-DAE has no embedding tables, so none of the table variants apply; the report still measures
    what does (its dense layers as int8), and that copy recommends."""
    from turborec.data import synthetic
    from turborec.models.mult_dae import MultDAEConfig
    from turborec.train.dae import MultDAERecommender

    model = MultDAERecommender(MultDAEConfig(hidden=16), epochs=2, seed=0, progress=False)
    saved = model.fit(synthetic(n_users=100, n_items=80, n_interactions=2000, seed=1)).save(tmp_path / "dae")
    out = tmp_path / "report"
    assert main(["compress", str(saved), "--report", "--no-rss", "--batch-size", "16", "--out", str(out)]) == 0
    table = (out / "compression.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split("|")[1].strip() for r in rows] == ["model", "mlp8"]
    small = load(out / "variants" / "mlp8")
    assert small.recommend(small.users.ids[0], N=5)[0].shape == (5,)
