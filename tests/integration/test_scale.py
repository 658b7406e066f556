"""`engine scale`: every stage measured at two tiny factors in processes of their own; bad arguments refused first."""
import subprocess
import sys
from pathlib import Path

import pytest

from engine import scale
from engine.errors import CrossLensError

ROOT = Path(__file__).resolve().parents[2]
TINY = {"dim": 16, "max_history": 10, "negatives": 64, "batch_size": 256, "text_dim": 16, "layers": 1, "epochs": 3}
STAGES = ["ingest", "scenario", "text", "train", "similarity", "evaluate", "explain", "training"]  # maps: a minute more


def test_every_stage_is_measured_at_every_factor_with_its_growth(tmp_path):
    out, seen = tmp_path / "scale.md", []
    report = scale.run([0.04, 0.02], out=out, workdir=tmp_path / "work", stages=STAGES, settings=TINY,
                       progress=lambda info, fraction: seen.append((info, fraction)))
    assert [r["stage"] for r in report["rows"]] == STAGES * 2
    assert [r["factor"] for r in report["rows"]] == [0.02] * len(STAGES) + [0.04] * len(STAGES)
    for r in report["rows"]:
        assert r["seconds"] > 0 and r["peak_mib"] > 0 and r["stage_mib"] >= 0, r
    assert set(report["sizes"]) == {0.02, 0.04}
    small, large = report["sizes"][0.02], report["sizes"][0.04]
    assert 0 < small["interactions"] < large["interactions"] and 0 < small["items"] < large["items"]
    assert [(e["stage"], e["from"], e["to"]) for e in report["exponents"]] == [(s, 0.02, 0.04) for s in STAGES]
    assert all(e["seconds"] is not None and e["peak_mib"] is not None for e in report["exponents"])
    markdown = out.read_text()
    assert markdown == report["markdown"] and markdown.startswith("# Scale")
    for label in map(scale.STAGES.get, STAGES):
        assert sum(line.startswith(f"| {label} |") for line in markdown.splitlines()) == 2  # seconds, exponents
    assert "texts per second" in markdown and "CPU cores" in markdown
    assert all(r["load_seconds"] > 0 for r in report["rows"] if r["stage"] == "explain")  # timed apart from it
    assert "loading the run before the explanation" in markdown
    for r in report["rows"]:
        if r["stage"] == "training":  # the train stage's one epoch, here up to the settings' 3 with early stopping
            assert r["validations"] >= 1 and 1 <= r["epochs_trained"] <= 3, r
    assert "full training: validations" in markdown
    assert seen[0][0]["factor"] == "0.02 (1 of 2)" and seen[-1][0]["factor"] == "0.04 (2 of 2)"
    assert not (tmp_path / "work").exists()  # made by the run, removed by it


@pytest.mark.parametrize("factors, words", [([0.02, 0], "at least"), ([0.02, -1], "at least"), ("1,x", "numbers"),
                                            ([1], "two different"), ([1, 1], "two different")])
def test_bad_factors_are_refused_before_any_workspace_exists(tmp_path, factors, words):
    with pytest.raises(CrossLensError, match=words):
        scale.run(factors, workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_the_cli_refuses_an_out_that_is_a_folder_in_one_paragraph(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine", "scale", "--factors", "abc,0", "--out", str(tmp_path),
                             "--stages", "text,trainng", "--workdir", str(tmp_path / "work"), "--workspace",
                             str(tmp_path / "ws")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot measure scaling:") and result.stderr.count("\n") == 1
    assert "--factors must be numbers" in result.stderr and "is a folder" not in result.stdout
    assert f"--out {tmp_path} must be a file" in result.stderr and "unknown stage(s) trainng" in result.stderr
    assert not (tmp_path / "work").exists()
