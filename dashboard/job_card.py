"""One background job as a card: what it trains, status, progress, live curves, log tail, cancel.
Shown by Overview (compact) and Train (full); both poll with st.fragment, so the page updates by itself."""
from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard import layout
from engine import api

ICONS = {"starting": ":material/hourglass_top:", "running": ":material/hourglass_top:",
         "done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:"}


def title(job: dict) -> str:
    spec = job["spec"]
    what = {"map": f"embedding maps of {spec.get('model')} run", "tune": f"tuning {spec.get('model')}"}.get(
        spec.get("kind"), spec.get("model", "?"))
    return (f"{ICONS.get(job['status'], '')} {what} · "
            f"{layout.direction(','.join(spec.get('source', [])), spec.get('target', '?'))} · seed {spec.get('seed')}")


def card(ws: str, job: dict, full: bool = True) -> None:
    active = job["status"] in api.JOB_ACTIVE
    with st.container(border=True):
        top = st.columns([5, 2, 1.4])
        top[0].markdown(f"**{title(job)}**  \n`{job['id']}`" + (f" → run `{job['run_id']}`" if job["run_id"] else ""))
        top[1].markdown(f"**{job['status']}**  \n{job['message'] or ''}")
        if active and top[2].button("Cancel", key=f"cancel-{job['id']}", icon=":material/stop_circle:"):
            with layout.readable_errors("Cancelling the job"):
                api.cancel_job(job["id"], ws)
                st.rerun()
        if active:
            st.progress(float(job["progress"]), text=f"{100 * job['progress']:.0f}% of this stage")
        if job["status"] == "failed":
            st.error(job["message"] or "failed")
        if not full:
            return
        curves = api.job_curves(job["id"], ws)
        if len(curves):
            st.plotly_chart(curve_figure(curves), width="stretch", key=f"curves-{job['id']}")
        elif active:
            st.caption("Curves appear after the first epoch (closed-form models such as pop and itemknn have none).")
        with st.expander("Log (last lines)", expanded=job["status"] == "failed"):
            st.code(api.job_log(job["id"], ws) or "(empty)", language=None)


def curve_figure(curves) -> go.Figure:
    """Training loss and validation NDCG@10 per epoch, one line per training stage."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation NDCG@10"))
    for n, (stage, part) in enumerate(curves.groupby("stage", sort=False)):
        colour = layout.PALETTE[n % len(layout.PALETTE)]
        for col, column in ((1, "loss"), (2, "valid_ndcg@10")):
            fig.add_trace(go.Scatter(x=part["epoch"], y=part[column], mode="lines+markers", name=stage,
                                     line=dict(color=colour), showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, math.ceil(curves["epoch"].max() / 10)))  # whole
    fig.update_yaxes(title_text="loss (sampled softmax / BPR)", row=1, col=1)
    fig.update_yaxes(title_text="NDCG@10", row=1, col=2)
    return layout.style(fig, height=300)
