"""Explain: one user's history and top-K recommendations, and why the model recommends one of them: SHAP and LIME
side by side over the history items and the item's knowledge-graph entities, with their faithfulness checks. Every
user's recommendations (or those of users in an uploaded histories file) download as one file."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import layout, upload
from engine import api

ws = layout.workspace()
layout.header("Explain a recommendation", "Features are the user's history items and the recommended item's "
                                          "attributes; removing one takes it out of what the model reads, and the "
                                          "model itself re-scores every perturbation.")
SHOWN = 15  # features per chart, by absolute attribution


def attribution_chart(features: pd.DataFrame, method: str, title: str) -> go.Figure:
    top = features.reindex(features[method].abs().sort_values(ascending=False).index).head(SHOWN)[::-1]
    labels = layout.distinct([label if len(label) <= 60 else label[:57] + "..." for label in top["label"]])
    fig = go.Figure(go.Bar(x=top[method], y=labels, orientation="h", hovertext=top["label"],
                           marker_color=["#2f9e44" if v > 0 else "#c2255c" for v in top[method]]))
    return layout.style(fig, "contribution to the score (model score units)", None, 120 + 28 * len(top)) \
        .update_layout(title=title)


LISTED_USERS = 1000  # test users the picker lists: thousands of options slow every view of the page by a second


def download_all(run_id: str) -> None:
    """Every user's top-K (or the top-K of users in an uploaded histories file) as a CSV or Parquet download."""
    left, mid, right = st.columns(3)
    k = left.number_input("K", 1, 100, 10, key="all-k")
    suffix = mid.radio("Format", [".csv", ".parquet"], horizontal=True, key="all-format")
    reasons = right.checkbox("With each one's top reason", key="all-reasons",
                             help="the history item whose removal lowers the score most: the model re-scores each "
                                  "history once per item (about 15x slower)")
    others = st.file_uploader("Or score other users from their histories (user_id, item_id[, timestamp][, domain] "
                              "rows in this run's domains)", type=["csv", "tsv", "txt", "parquet"], key="all-histories")
    if not st.button("Prepare the file", icon=":material/download:"):
        return
    bar = st.progress(0.0, "Loading the run ...")
    with api.upload_folder(ws) as folder:
        histories = upload.save(others, folder, "histories.csv") if others is not None else None
        out = folder / f"recommendations-{run_id}{suffix}"
        result = layout.loaded(ws, run_id).recommend_to_file(
            out, int(k), reasons, histories, progress=lambda info, done: bar.progress(done, text=info["users"]))
        payload = out.read_bytes()
    bar.empty()
    for warning in result["warnings"]:
        st.warning(warning)
    st.download_button(f"Download {result['rows']:,} recommendations of {result['users']:,} users", payload,
                       file_name=out.name, on_click="ignore", type="primary",
                       mime="text/csv" if suffix == ".csv" else "application/vnd.apache.parquet")


with layout.readable_errors("Explaining"):
    runs = layout.done_runs(ws, layout.HISTORY_MODELS)
    if runs.empty:
        st.info(f"No finished run of a model that scores from a history ({', '.join(layout.HISTORY_MODELS)}) yet: "
                f"train one on the **Train** page.")
        st.stop()
    left, mid, right = st.columns([5, 2.2, 3])
    run_id = layout.pick_run(runs, where=left)
    with st.expander("Recommendations of every user, as a file", icon=":material/download:"):
        with layout.readable_errors("Writing the recommendations"):
            download_all(run_id)
    segment = mid.segmented_control("Users", ["warm", "cold", "any"], default="warm") or "warm"
    users = layout.test_users(ws, run_id, None if segment == "any" else segment)
    if not users:
        st.info(f"This run has no {segment} test users.")
        st.stop()
    user = right.selectbox(f"User ({len(users):,} test users; the first {min(len(users), LISTED_USERS):,} listed, or "
                           f"type any user's id)", users[:LISTED_USERS], accept_new_options=True)
    k = st.slider("Recommendations (K)", 5, 20, 10)

    recs = layout.recommendations(ws, run_id, user, k)
    history = layout.history(ws, run_id, user)
    left, right = st.columns([2, 3])
    with left:
        st.subheader("History")
        st.caption(f"Scored from the user's {recs['basis']}; oldest first.")
        domains = list(dict.fromkeys(history["domain"])) or ["(none)"]
        for tab, domain in zip(st.tabs([f"{d} ({int((history['domain'] == d).sum())})" for d in domains]), domains):
            part = history[history["domain"] == domain]
            layout.table(part[["position", "title"]], tab, hide_index=True, width="stretch",
                          height=min(36 + 35 * len(part), 390),
                          column_config={"position": st.column_config.NumberColumn("#", width="small"),
                                         "title": st.column_config.TextColumn(width="large")})
    with right:
        st.subheader(f"Top {k} in {recs['recommendations'][0]['domain']}")
        table = pd.DataFrame(recs["recommendations"])
        table.insert(0, "rank", range(1, len(table) + 1))
        layout.table(table[["rank", "score", "held_out", "title", "item_id"]], hide_index=True,
                     width="stretch", height=min(36 + 35 * len(table), 390),
                     column_config={"rank": st.column_config.NumberColumn("#", width="small"),
                                    "held_out": st.column_config.CheckboxColumn("held-out hit", width="small"),
                                    "score": st.column_config.NumberColumn(format="%.3f", width="small"),
                                    "title": st.column_config.TextColumn(width="large")})

    options = [f"{n}. {r['title']}" for n, r in enumerate(recs["recommendations"], 1)]
    chosen = st.selectbox("Explain recommendation", options)
    item = recs["recommendations"][options.index(chosen)]["item_id"]
    result = layout.explanation(ws, run_id, user, item)

    st.info(result["summary"], icon=":material/lightbulb:")
    cols = st.columns(5)
    cols[0].metric("Rank", f"{result['rank']:,} of {result['candidates']:,}",
                   help=f"among the {recs['recommendations'][0]['domain']} items the user does not know yet; the "
                        f"model's score is {result['score']:.3f}, and {result['base_value']:.3f} with every feature "
                        f"removed")
    cols[1].metric("SHAP additivity error", f"{result['shap']['additivity_error']:.1e}",
                   help="|base + sum of SHAP values − score|: 0 means the attributions add up exactly")
    cols[2].metric("LIME fit R²", f"{result['lime']['score']:.3f}",
                   help="how well LIME's local linear model fits the model's scores on the perturbations")
    agreement = result["agreement"]
    cols[3].metric("SHAP–LIME agreement", "—" if agreement is None else f"ρ = {agreement:.2f}",
                   help="Spearman rank correlation of the two methods' attributions")
    deletion = result["deletion"]
    if deletion:
        wins = sum(d["wins"] for d in deletion.values())
        cols[4].metric("Deletion check", f"{wins}/{len(deletion)} passed",
                       help="removing each method's top 3 features lowers the score more than removing 3 random ones")
    features = pd.DataFrame(result["features"])
    left, right = st.columns(2)
    left.plotly_chart(attribution_chart(features, "shap", f"SHAP ({result['shap']['nsamples']} coalitions)"),
                      width="stretch", key="shap-chart")
    right.plotly_chart(attribution_chart(features, "lime", f"LIME ({result['lime']['num_samples']} samples)"),
                       width="stretch", key="lime-chart")
    if deletion:
        st.caption(" · ".join(f"{m.upper()}: removing {', '.join(d['removed'])} drops the score by "
                              f"{d['top_drop']:.3f} (3 random features: {d['random_drop']:.3f})"
                              for m, d in deletion.items()))
    with st.expander("All features"):
        layout.table(features[["label", "kind", "shap", "lime", "methods_disagree"]], hide_index=True, width="stretch",
                     column_config={"methods_disagree": st.column_config.CheckboxColumn(
                         "signs differ", help="SHAP and LIME give the feature opposite signs: read it with care")})
    disagree = features.loc[features["methods_disagree"], "label"].tolist()
    if disagree:
        st.caption(f"⚠️ SHAP and LIME disagree on the sign of {len(disagree)} feature(s): "
                   + "; ".join(disagree[:5]) + (" ..." if len(disagree) > 5 else ""))
