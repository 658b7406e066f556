"""Tuning studies on the Train page: each trial's validation NDCG@10 (pruned and failed ones marked), the best so
far, the defaults' figure, the trials' settings and the best trial's test run. Polled with st.fragment, like jobs."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import layout
from engine import api

STATE_COLOURS = {"complete": layout.PALETTE[0], "pruned": layout.PALETTE[6], "failed": layout.PALETTE[4],
                 "running": layout.PALETTE[11], "cancelled": layout.PALETTE[11]}


def study_label(study: dict) -> str:
    r = study["request"]
    scenario = layout.direction(",".join(r["source"]), r["target"])
    return f"{r['model']} · {scenario} · {study['status']} · {study['id']}"


def settings_words(params: dict) -> str:
    return "<br>".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items())


def trials_figure(study: dict) -> go.Figure:
    """Per trial its validation NDCG@10 (a pruned trial: its last epoch's), and the best so far as a step line."""
    trials = pd.DataFrame(study["trials"])
    trials["shown"] = trials["value"].where(trials["state"] == "complete",
                                            trials["curve"].map(lambda c: c[-1] if c else None))
    fig = go.Figure()
    for state, part in trials.groupby("state", sort=False):
        fig.add_trace(go.Scatter(x=part["number"], y=part["shown"], mode="markers", name=state,
                                 marker=dict(color=STATE_COLOURS.get(state), size=10),
                                 text=part["params"].map(settings_words),
                                 hovertemplate="trial %{x}: %{y:.4f}<br>%{text}<extra></extra>"))
    done = trials[trials["state"] == "complete"]
    if len(done):
        fig.add_trace(go.Scatter(x=done["number"], y=done["value"].cummax(), mode="lines", line_shape="hv",
                                 name="best so far", line=dict(color=layout.PALETTE[0], dash="dot")))
    if study["trials"] and study["trials"][0]["state"] == "complete":
        fig.add_hline(y=study["trials"][0]["value"], line_dash="dash", line_color=layout.PALETTE[11],
                      annotation_text="defaults (trial 1)", annotation_position="bottom right")
    fig.update_xaxes(tickmode="linear", dtick=max(1, len(trials) // 10), rangemode="tozero")
    segment = study["request"]["segment"]
    return layout.style(fig, "trial", f"validation NDCG@10 ({segment} users)", 320)


@st.fragment(run_every=3)
def studies(ws: str) -> None:
    with layout.readable_errors("Reading the tuning studies"):
        found = api.studies(ws)[::-1]  # newest first
        if not found:
            return
        st.subheader("Tuning studies")
        labels = {study_label(s): s for s in found}
        study = labels[st.selectbox("Study", list(labels), key="study")]
        st.markdown(f"**{study['status']}**: {study['message'] or 'the first trial is under way'}")
        if study["best"] and study["defaults_value"] is not None:
            cols = st.columns(3)
            cols[0].metric("Best trial (validation NDCG@10)", f"{study['best']['value']:.4f}",
                           f"{study['best']['value'] - study['defaults_value']:+.4f} against the defaults")
            cols[1].metric("Defaults (validation NDCG@10)", f"{study['defaults_value']:.4f}")
            if study["test_run"]:
                tested = api.run(study["test_run"], ws)["metrics"]
                cols[2].metric("Best trial's test run: warm NDCG@10",
                               f"{tested.get('warm', tested['all'])['ndcg@10']:.4f}",
                               help=f"run {study['test_run']}, shown on Compare beside the other runs")
        if study["trials"]:
            st.plotly_chart(trials_figure(study), width="stretch", key=f"trials-{study['id']}")
            rows = [{"trial": t["number"], "state": t["state"], "valid NDCG@10": t["value"],
                     "seconds": t["seconds"], "run": t["run"], **t["params"]} for t in study["trials"]]
            layout.table(rows, hide_index=True, width="stretch",
                         column_config={"valid NDCG@10": st.column_config.NumberColumn(format="%.4f"),
                                        "seconds": st.column_config.NumberColumn(format="%.1f")})
