"""The CLI contract, end to end in a subprocess: ingest -> train -> runs/show -> recommend -> compare."""
import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def cli(*args, workspace, check=True):
    result = subprocess.run([sys.executable, "-m", "engine", *map(str, args), "--workspace", str(workspace)],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_round_trip(tmp_path, domain_files):
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        out = json.loads(cli("ingest", "--domain", name, "--interactions", inter, "--items", items, "--json",
                             workspace=ws).stdout)
        assert out["name"] == name and out["n_interactions"] > 0
    listed = json.loads(cli("datasets", "--json", workspace=ws).stdout)
    assert {d["name"] for d in listed} == {"src", "tgt"}

    runs = {}
    for model in ("pop", "itemknn"):
        record = json.loads(cli("train", "--source", "src", "--target", "tgt", "--model", model, "--json",
                                workspace=ws).stdout)
        assert record["status"] == "done"
        assert set(record["metrics"]) == {"all", "warm", "cold", "new", "tail", "torso", "head", "new+tail",
                                          "users 0", "users 1-2", "users 3-5", "users 6-10", "users 11+"}
        assert {"ndcg@10", "hr@10", "mrr@10"} <= set(record["metrics"]["warm"])
        runs[model] = record["id"]

    labelled = json.loads(cli("label", runs["pop"], "--name", "the floor", "--tag", "baseline", "--json",
                              workspace=ws).stdout)
    assert labelled["name"] == "the floor" and labelled["tags"] == ["baseline"]
    table = cli("runs", workspace=ws).stdout
    assert runs["pop"] in table and runs["itemknn"] in table and "the floor" in table
    shown = json.loads(cli("show", runs["itemknn"], "--json", workspace=ws).stdout)
    assert shown["model"] == "itemknn"
    text = cli("show", runs["itemknn"], workspace=ws).stdout
    assert "per item bucket" in text and "per user activity" in text
    for segment in ("new+tail", "torso", "users 3-5"):  # a row of the headline metrics per bucket
        line = next(x for x in text.splitlines() if x.startswith(f"{segment} "))
        assert f"{shown['metrics'][segment]['ndcg@10']:.4f}" in line

    recs = json.loads(cli("recommend", runs["itemknn"], "--user", "u1", "-k", "5", "--json", workspace=ws).stdout)
    assert len(recs["recommendations"]) == 5
    assert {"item_id", "title", "score"} <= set(recs["recommendations"][0])
    assert all(r["item_id"].startswith("tgt") for r in recs["recommendations"])

    out = tmp_path / "everyone.csv"
    wrote = json.loads(cli("recommend", runs["itemknn"], "--all", "--out", out, "-k", "3", "--json",
                           workspace=ws).stdout)
    assert wrote["rows"] == 3 * wrote["users"] == len(out.read_text().splitlines()) - 1
    reader_gone = subprocess.Popen([sys.executable, "-m", "engine", "recommend", runs["itemknn"], "--user", "u1",
                                    "--json", "--workspace", str(ws)], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    reader_gone.stdout.close()  # like `| head` that has read enough
    assert reader_gone.communicate()[1] == ""  # quiet: no traceback, no "fault in CrossLens"

    compared = json.loads(cli("compare", runs["itemknn"], runs["pop"], "--json", workspace=ws).stdout)
    assert 0 <= compared["segments"]["all"]["p_value"] <= 1
    assert 0 <= compared["segments"]["new+tail"]["p_value"] <= 1
    printed = cli("compare", runs["itemknn"], runs["pop"], workspace=ws).stdout
    assert all(any(x.startswith(f"{segment} ") for x in printed.splitlines()) for segment in compared["segments"])

    # bad input: exit code 2, one paragraph on stderr, no traceback, nothing changed
    for args in (("recommend", runs["pop"], "--user", "nobody"), ("show", "no-such-run"),
                 ("train", "--source", "src", "--target", "nope", "--model", "pop"),
                 ("train", "--source", "src", "--target", "tgt", "--model", "bpr", "--set", "dimm=3"),
                 ("label", runs["pop"], "--tag", "has space"),
                 ("ingest", "--domain", "x", "--interactions", tmp_path / "missing.csv")):
        result = cli(*args, workspace=ws, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    assert len(json.loads(cli("runs", "--json", workspace=ws).stdout)) == 2


def test_bad_upload_names_file_row_and_column(tmp_path):
    bad = tmp_path / "books.csv"
    bad.write_text("user_id,item_id,timestamp\nu1,i1,2024-01-01\nu2,i2,yesterday\n")
    result = cli("ingest", "--domain", "books", "--interactions", bad, workspace=tmp_path / "ws", check=False)
    assert result.returncode == 2
    assert "books.csv" in result.stderr and "timestamp" in result.stderr and "2" in result.stderr
    assert json.loads(cli("datasets", "--json", workspace=tmp_path / "ws").stdout) == []


def test_speed_refuses_a_device_this_machine_lacks_before_anything_runs(tmp_path):
    import torch
    bad = cli("speed", "--source", "a", "--target", "b", "--device", "tpu", workspace=tmp_path / "ws", check=False)
    assert bad.returncode == 2 and "--device must be one of cpu, cuda" in bad.stderr
    if not torch.cuda.is_available():
        gpu = cli("speed", "--source", "a", "--target", "b", "--device", "cuda", workspace=tmp_path / "ws",
                  check=False)
        assert gpu.returncode == 2 and "no CUDA GPU" in gpu.stderr and "Traceback" not in gpu.stderr


def test_bench_writes_the_table(tmp_path, domain_files):
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        cli("ingest", "--domain", name, "--interactions", inter, "--items", items, workspace=ws)
    out = tmp_path / "bench.md"
    cli("bench", "--source", "src", "--target", "tgt", "--both", "--models", "pop,itemknn", "--seeds", "0,1",
        "--out", out, workspace=ws)
    text = out.read_text()
    for direction in ("src -> tgt", "tgt -> src"):
        for model in ("pop", "itemknn"):
            assert f"| {direction} | {model} |" in text
    assert "itemknn > pop on warm users" in text or "itemknn NOT > pop on warm users" in text
    for direction in ("src -> tgt", "tgt -> src"):
        assert f"### {direction}: ndcg@10 per item bucket" in text
        assert f"### {direction}: hr@10 per user-activity bucket" in text
    # reuse tabulates the finished runs without training new ones
    before = len(json.loads(cli("runs", "--json", workspace=ws).stdout))
    cli("bench", "--source", "src", "--target", "tgt", "--models", "pop", "--reuse", "--out", out, workspace=ws)
    assert len(json.loads(cli("runs", "--json", workspace=ws).stdout)) == before


def test_bench_lmkg_against_the_best_other_model_and_a_post_training_ablation(tmp_path, domain_files):
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        cli("ingest", "--domain", name, "--interactions", inter, "--items", items, workspace=ws)
    out = tmp_path / "bench.md"
    cli("bench", "--source", "src", "--target", "tgt", "--models", "pop,itemknn,lmkg,lmkg -cf", "--out", out,
        workspace=ws)
    text = out.read_text()
    assert "| src -> tgt | lmkg -cf |" in text
    assert "- src -> tgt, warm: lmkg " in text and "- src -> tgt, cold: lmkg " in text
    assert "### Per bucket: lmkg against the best other model" in text and "- src -> tgt, new+tail: lmkg " in text
    runs = json.loads(cli("runs", "--json", workspace=ws).stdout)
    full = next(r for r in runs if r["model"] == "lmkg" and r["config"]["params"]["use_cf"])
    derived = next(r for r in runs if r["model"] == "lmkg" and not r["config"]["params"]["use_cf"])
    # the ablation reuses the trained network (the channel is fitted after it) instead of training again
    assert derived["config"]["derived_from"] == full["id"] and derived["train_seconds"] == full["train_seconds"]
    # an analyst derives the run with new items moved up; a setting out of range is refused and makes no run
    promoted = json.loads(cli("derive", full["id"], "--set", "new_items=2", "--json", workspace=ws).stdout)
    assert promoted["config"]["params"]["new_items"] == 2.0 and promoted["config"]["derived_from"] == full["id"]
    count = len(json.loads(cli("runs", "--json", workspace=ws).stdout))
    refused = cli("derive", full["id"], "--set", "new_items=11", workspace=ws, check=False)
    assert refused.returncode == 2 and "new_items must be at least -10 and at most 10" in refused.stderr
    assert "Traceback" not in refused.stderr and len(json.loads(cli("runs", "--json", workspace=ws).stdout)) == count
    bad = cli("bench", "--source", "src", "--target", "tgt", "--models", "lmkg -nothing", "--out", out,
              workspace=ws, check=False)
    assert bad.returncode == 2 and "unknown bench row" in bad.stderr


def test_tune_chooses_on_validation_then_lists_the_study_and_shows_its_trials(tmp_path, domain_files):
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        cli("ingest", "--domain", name, "--interactions", inter, "--items", items, workspace=ws)
    record = json.loads(cli("tune", "--source", "src", "--target", "tgt", "--model", "bpr", "--trials", "3",
                            "--epochs", "2", "--set", "reg=0.01", "--json", workspace=ws).stdout)
    assert record["status"] == "done" and len(record["trials"]) == 3
    assert all(set(t["params"]) == {"dim", "lr"} for t in record["trials"])  # reg is fixed by --set
    listed = cli("studies", workspace=ws).stdout
    assert record["id"] in listed and record["test_run"] in listed
    shown = cli("studies", record["id"], workspace=ws).stdout
    assert f"best {record['best']['value']:.4f} (trial {record['best']['number']})" in shown
    assert cli("show", record["trials"][0]["run"], workspace=ws).stdout.count("valid ") >= 3  # its segments
    refused = cli("tune", "--source", "src", "--target", "tgt", "--model", "bpr", "--trials", "0", workspace=ws,
                  check=False)
    assert refused.returncode == 2 and "trials must be" in refused.stderr and "Traceback" not in refused.stderr
