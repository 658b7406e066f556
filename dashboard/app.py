"""CrossLens dashboard (minimal for now): the workspace's datasets and runs with their headline metrics.

Pages only call engine.api; no ML logic lives here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` does not put the repo on the path
from engine import api  # noqa: E402
from engine.store import workspace_path  # noqa: E402

st.set_page_config(page_title="CrossLens", layout="wide")
st.title("CrossLens")
st.caption("Cross-domain recommendation workbench")


@st.cache_data(ttl=5)
def load(workspace: str):
    return api.datasets(workspace), api.runs(workspace)


try:
    datasets, runs = load(str(workspace_path().resolve()))
except Exception as err:  # a broken workspace must read as a message, not a traceback
    st.error(f"Could not read the workspace: {err}")
    st.stop()

st.subheader("Datasets")
if datasets:
    st.dataframe(pd.DataFrame(datasets)[["name", "n_users", "n_items", "n_interactions", "n_triples"]],
                 hide_index=True, use_container_width=True)
else:
    st.info("No datasets yet. Run `make run` (ingests the shipped data) or `python -m engine ingest ...`.")

st.subheader("Runs")
if runs:
    rows = []
    for r in runs:
        row = {"run": r["id"], "model": r["model"], "source": ",".join(r["scenario"]["source"]),
               "target": r["scenario"]["target"], "seed": r["scenario"]["seed"], "status": r["status"],
               "train s": r["train_seconds"], "eval s": r["eval_seconds"]}
        for segment in ("warm", "cold"):
            for metric in ("ndcg@10", "hr@10", "mrr@10"):
                row[f"{segment} {metric}"] = (r["metrics"] or {}).get(segment, {}).get(metric)
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
else:
    st.info("No runs yet. Train one with `python -m engine train --source arts --target office --model itemknn`.")
