"""Training under torchrun with two gloo processes gives the result of one process, within noise."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ["--set", "use_text=0", "--set", "dim=32", "--set", "batch_size=32", "--set", "negatives=32",
            "--set", "max_history=20", "--set", "lr=0.003", "--set", "patience=100", "--epochs", "30"]


def run(args, workspace):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*args, "--workspace", str(workspace)], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_gloo_processes_match_one(tmp_path, domain_files):
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        run([sys.executable, "-m", "engine", "ingest", "--domain", name, "--interactions", inter, "--items", items], ws)
    train = ["-m", "engine", "train", "--source", "src", "--target", "tgt", "--model", "lmkg", "--no-maps", *SETTINGS]
    one = json.loads(run([sys.executable, *train, "--json"], ws).stdout)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *train], ws)
    runs = json.loads(run([sys.executable, "-m", "engine", "runs", "--json"], ws).stdout)
    assert len(runs) == 2  # only rank 0 registers the run
    two = runs[1]
    assert two["config"]["processes"] == 2 and one["config"]["processes"] == 1
    for segment in ("warm", "cold"):
        a, b = one["metrics"][segment]["ndcg@10"], two["metrics"][segment]["ndcg@10"]
        assert abs(a - b) < 0.35 * max(a, b), (segment, a, b)
