"""Compare: the runs table (filter, sort, CSV), metrics per segment with the spread over seeds, metric@K curves,
and the paired significance test of any run against a reference run on the same scenario. Segments come in groups:
users (warm, cold, all), the held-out item's popularity buckets, the user-activity buckets."""
import plotly.express as px
import streamlit as st

from dashboard import layout
from engine import api

ws = layout.workspace()
layout.header("Compare runs", "Full ranking over the target domain's items; warm users have target history, cold "
                              "users are scored from their source-domain history alone.")

def winner(r: dict, a: str, b: str) -> str:
    """Which side wins a paired test, by how much, in words."""
    if r["p_value"] >= 0.05:
        return "no significant difference"
    better, high, low = (a, r["mean_a"], r["mean_b"]) if r["mean_a"] > r["mean_b"] else (b, r["mean_b"], r["mean_a"])
    return f"{better} better" + (f", {high / low:.2f}x" if low else "")


def verdict(segments: dict, metric: str, a: str, b: str) -> str:
    """The paired test of the warm (else all) users in a sentence: who wins, the ratio, the p-value, and how the
    users split."""
    segment = "warm" if "warm" in segments else "all"
    r = segments[segment]
    said = winner(r, f"**{a}**", f"**{b}**")
    return (f"On {segment} users ({r['n']:,}), {metric}: {r['mean_a']:.4f} for {a} against {r['mean_b']:.4f} for {b}"
            f" — {said} (p = {r['p_value']:.2g}). {a} is better for {r['a_better']:.0%} of these users, {b} for "
            f"{r['b_better']:.0%}, and the rest tie.")


def beats_figure(tested: dict, segments: list[str], a: str, b: str, metric: str):
    """Where A beats B: per cohort of the chosen group, the share of its users each run does better for (B's to
    the left), the users the two runs tie on making up the rest."""
    cohorts = [s for s in segments if s in tested]
    rows = [{"cohort": f"{s} ({tested[s]['n']:,})", "better": name, "share": sign * tested[s][key]}
            for s in cohorts for name, key, sign in ((a, "a_better", 1), (b, "b_better", -1))]
    fig = px.bar(rows, y="cohort", x="share", color="better", orientation="h", barmode="relative",
                 color_discrete_sequence=layout.PALETTE[:2],
                 title=f"Where {a} beats {b}: share of each cohort's users with a higher {metric} (ties: the rest)")
    fig.update_xaxes(tickformat=".0%", range=[-1, 1])
    fig.update_yaxes(autorange="reversed")
    return layout.style(fig, f"← {b} better · {a} better →", "cohort (users)", 80 + 40 * len(cohorts))


with layout.readable_errors("Comparing the runs"):
    runs = layout.done_runs(ws)
    if runs.empty:
        st.info("No finished runs yet: launch one on the **Train** page.")
        st.stop()
    # Runs are comparable when they split the same way: same domains and cold-start fraction (seeds vary).
    runs = runs.assign(direction=[f"{layout.direction(s, t)} · cold {c:g}"
                                  for s, t, c in zip(runs["source"], runs["target"], runs["cold fraction"])])

    left, mid, right = st.columns([2, 3, 2])
    directions = sorted(runs["direction"].unique())
    chosen = left.selectbox("Scenario (source → target · cold-start fraction)", directions)
    view = runs[runs["direction"] == chosen]
    variants = sorted(view["variant"].unique())
    models = mid.multiselect("Models (variants with changed settings are labelled with them)", variants,
                             default=variants)
    view = view[view["variant"].isin(models)].drop(columns=["model"]).rename(columns={"variant": "model"})
    # Long form (run, segment, metric, k, value) of the chosen runs, with each run's model and seed.
    long = layout.metrics(ws).dropna(subset=["k", "value"]).merge(view[["run", "model", "seed"]], on="run")
    long["name"] = long["metric"] + "@" + long["k"].astype(str)
    families = sorted(long["metric"].unique())
    metrics = sorted(long["name"].unique(), key=lambda m: (m.split("@")[0], int(m.split("@")[1])))
    if view.empty or not metrics:
        st.info("Choose at least one model.")
        st.stop()
    metric = right.selectbox("Metric", metrics, index=metrics.index("ndcg@10") if "ndcg@10" in metrics else 0)

    groups = layout.segment_groups(long["segment"].unique())
    group = st.segmented_control("Segments", list(groups), default=next(iter(groups)), key="segment-group",
                                 help="Users: warm, cold, all. Held-out item's popularity: warm cases by the "
                                      "held-out item's target-domain training interactions. User activity: cases by "
                                      "the number of target-domain items in their history (users 0 = cold users).")
    segments = groups[group or next(iter(groups))]

    # Grouped bars: the mean over seeds per segment and model, with the seeds' standard deviation.
    chosen_metric = long[(long["name"] == metric) & long["segment"].isin(segments)]
    bars = chosen_metric.groupby(["segment", "model"], as_index=False).agg(
        mean=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique"))
    spread = bars["std"].where(bars["seeds"] >= 2)  # one seed has no spread to draw
    fig = px.bar(bars, x="segment", y="mean", color="model", barmode="group", error_y=spread,
                 hover_data={"seeds": True, "std": ":.4f", "mean": ":.4f"}, color_discrete_sequence=layout.PALETTE,
                 category_orders={"segment": segments, "model": models},
                 title=f"{metric} per segment (mean over seeds"
                       + ("; error bars: std over seeds, where a model has two or more)" if spread.notna().any()
                          else "; one seed each, so no error bars)"))
    st.plotly_chart(layout.style(fig, "segment", f"{metric} (0–1)"), width="stretch")

    left, right = st.columns(2)
    family = left.selectbox("Metric@K curve", families, index=families.index(metric.split("@")[0]))
    default = "warm" if "warm" in segments else segments[0]
    segment = right.segmented_control("Segment", segments, default=default, key=f"curve-segment-{group}")
    segment = segment or default
    curve = long[(long["metric"] == family) & (long["segment"] == segment)].rename(columns={"k": "K"})
    curve = curve.astype({"K": int}).groupby(["model", "K"], as_index=False)["value"].mean()
    ks = sorted(curve["K"].unique().tolist())
    fig = px.line(curve, x="K", y="value", color="model", markers=True,
                  color_discrete_sequence=layout.PALETTE, title=f"{family}@K, {segment} users (mean over seeds)")
    fig.update_xaxes(tickvals=ks)
    st.plotly_chart(layout.style(fig, "K (length of the recommendation list)", f"{family}@K"),
                    width="stretch")

    st.subheader("Runs")
    shown = ["run", "name", "model", "seed", "cold fraction",
             *[f"{s} {metric}" for s in segments if f"{s} {metric}" in view], "all coverage@10", "train s", "eval s",
             "tags", "note"]
    figures = shown[5:-2]
    sort = st.selectbox("Sort by", figures, index=0)
    table = view.sort_values(sort, ascending=False)
    layout.table(table[[c for c in shown if c in table]], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in figures[:-2]}
                 | {"train s": st.column_config.NumberColumn("train (s)", format="%.1f"),
                    "eval s": st.column_config.NumberColumn("eval (s)", format="%.2f")})
    st.download_button("Download all metrics (CSV)", api.safe_table(table.drop(columns=["error"])).to_csv(index=False),
                       file_name="crosslens-runs-" + "".join(c if c.isalnum() else "-" for c in chosen) + ".csv",
                       mime="text/csv", icon=":material/download:")
    with st.expander("Name, tag or note a run", icon=":material/label:"):
        labelled = layout.pick_run(view, "Run", key="label-run")
        current = view[view["run"] == labelled].iloc[0]
        text = lambda value: value if isinstance(value, str) else ""  # noqa: E731  (None or NaN in the table)
        name = st.text_input("Name", text(current["name"]), max_chars=80, key=f"name-{labelled}")
        tags = st.text_input("Tags (separated by commas)", current["tags"], key=f"tags-{labelled}")
        note = st.text_area("Note", text(current["note"]), max_chars=2000, key=f"note-{labelled}")
        if st.button("Save", key="label-save", icon=":material/save:"):
            with layout.readable_errors("Saving the labels"):
                wanted = [t.strip() for t in tags.split(",") if t.strip()]
                old = [t for t in current["tags"].split(", ") if t]
                api.label_run(labelled, name, wanted, [t for t in old if t not in wanted], note, ws)
                layout.runs.clear()
                st.rerun()
    with st.expander("Delete a run", icon=":material/delete:"):
        doomed = layout.pick_run(view, "Run to delete (its metrics and files go; a run still training cannot)",
                                 key="delete-run")
        if st.button("Delete this run", disabled=not st.checkbox(f"Yes, delete run {doomed}", key="delete-sure")):
            api.delete_run(doomed, ws)
            layout.runs.clear()
            layout.metrics.clear()
            st.rerun()
    promotable = runs[(runs["direction"] == chosen) & runs["model"].isin(
        [m for m, about in layout.MODELS.items() if "new_items" in about["post_training"]])]
    if not promotable.empty:
        with st.expander("Move never-bought items up in a run's lists", icon=":material/new_releases:"):
            st.caption("Validation keeps items nobody bought in training as low as is most accurate. To give a launch "
                       "more exposure, derive a run with them moved up: nothing is retrained, and the new, tail and "
                       "head buckets above show what it costs.")
            parent = layout.pick_run(promotable, "Run", key="derive-run")
            model = promotable.loc[promotable["run"] == parent, "model"].iloc[0]
            amount = st.number_input("Move them by (new_items, standard deviations of the scores)", -10.0, 10.0, 1.0,
                                     0.5, key="derive-new-items", help=layout.MODELS[model]["help"]["new_items"])
            if st.button("Derive a run (background job)", key="derive-start", icon=":material/call_split:"):
                with layout.readable_errors("Deriving the run"):
                    job = api.start_derive(parent, {"new_items": float(amount)}, ws)
                    st.success(f"Job {job['id']} started: the run appears here when it is done (the Overview shows "
                               f"its progress).")

    st.subheader("Paired significance")
    st.caption("Wilcoxon signed-rank test on the per-user values of two runs of the same scenario (same users, "
               "same held-out items).")
    left, right = st.columns(2)
    a = layout.pick_run(view, "Run", left, key="run-a")
    scenario = view.loc[view["run"] == a, "scenario"].iloc[0]
    same = view[(view["scenario"] == scenario) & (view["run"] != a)]
    if same.empty:
        right.info("No other run on exactly this scenario (same seed and cold fraction) to test against.")
    else:
        b = layout.pick_run(same, "Reference run", right, key="run-b")
        paired = metric
        if metric.split("@")[0] in api.SET_METRICS:
            paired = "ndcg@10"
            st.caption(f"{metric} describes the whole set of lists, not one user's, so the paired test uses {paired}.")
        result = layout.compare(ws, a, b, paired)
        name_a, name_b = (layout.short_label(view[view["run"] == r].iloc[0]) for r in (a, b))
        st.markdown(verdict(result["segments"], paired, name_a, name_b))
        rows = [{"segment": seg, "users": r["n"], f"{paired} run": r["mean_a"], f"{paired} reference": r["mean_b"],
                 "ratio": r["mean_a"] / r["mean_b"] if r["mean_b"] else None, "p-value": r["p_value"],
                 "verdict": winner(r, "run", "reference"), "run better for": r["a_better"],
                 "reference better for": r["b_better"]}
                for seg, r in result["segments"].items()]
        share = st.column_config.NumberColumn(format="percent", help="share of the segment's users")
        layout.table(rows, hide_index=True, width="stretch",
                     column_config={"p-value": st.column_config.NumberColumn(format="%.2e"),
                                    "run better for": share, "reference better for": share})
        st.plotly_chart(beats_figure(result["segments"], segments, name_a, name_b, paired), width="stretch",
                        key="where-a-beats-b")
