"""Overview: the workspace at a glance: datasets, latest runs with headline metrics, jobs at work."""
import plotly.express as px
import streamlit as st

from dashboard import job_card, layout
from engine import api

ws = layout.workspace()
layout.header("Overview", f"Workspace `{ws}`")

with layout.readable_errors("Reading the workspace"):
    datasets = layout.datasets(ws)
    runs = layout.runs(ws)
    done = runs[runs["status"] == "done"] if len(runs) else runs

    cols = st.columns(4)
    cols[0].metric("Domains", len(datasets))
    cols[1].metric("Interactions", f"{sum(d['n_interactions'] for d in datasets):,}")
    cols[2].metric("Finished runs", len(done))
    cols[3].metric("Scenarios", runs["scenario"].nunique() if len(runs) else 0)

    if not datasets:
        st.info("No datasets yet. Upload a domain on the **Datasets** page, or start with `make run`, which ingests "
                "the shipped Amazon arts + office data and trains the default runs.")

    @st.fragment(run_every=3)
    def active_jobs():
        jobs = [j for j in api.jobs(ws) if j["status"] in api.JOB_ACTIVE]
        if jobs:
            st.subheader(f"Training now ({len(jobs)})")
            for job in jobs:
                job_card.card(ws, job, full=False)

    active_jobs()

    if len(done):
        st.subheader("Latest runs")
        latest = done.sort_values("created", ascending=False).head(12)
        headline = [c for c in ("warm ndcg@10", "cold ndcg@10", "warm hr@10", "cold hr@10", "all coverage@10")
                    if c in latest.columns]
        layout.table(latest[["run", "variant", "source", "target", "seed", *headline, "train s"]], hide_index=True,
                     width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in headline}
                     | {"train s": st.column_config.NumberColumn("train (s)", format="%.1f"),
                        "variant": st.column_config.TextColumn("model")})
        scenario = latest.iloc[0]
        same = done[(done["source"] == scenario["source"]) & (done["target"] == scenario["target"])]
        if (same["variant"] == same["model"]).any():  # each model at its default settings, where there are such
            same = same[same["variant"] == same["model"]]
        best = (same.melt(id_vars=["variant"], value_vars=[c for c in ("warm ndcg@10", "cold ndcg@10") if c in same],
                          var_name="segment", value_name="NDCG@10")
                .groupby(["variant", "segment"], as_index=False)["NDCG@10"].mean())
        best["segment"] = best["segment"].str.split().str[0]
        fig = px.bar(best, x="variant", y="NDCG@10", color="segment", barmode="group",
                     color_discrete_map=layout.SEGMENT_COLOURS,
                     title=f"NDCG@10 by model (mean over seeds), "
                           f"{layout.direction(scenario['source'], scenario['target'])}")
        st.plotly_chart(layout.style(fig, "model", "NDCG@10 (full ranking)"), width="stretch")
    elif datasets:
        st.info("No finished run yet. Launch one on the **Train** page.")

    if datasets:
        st.subheader("Datasets")
        layout.table([{"domain": d["name"], "users": d["n_users"], "items": d["n_items"],
                       "interactions": d["n_interactions"], "KG triples": d["n_triples"]} for d in datasets],
                     hide_index=True, width="stretch")
