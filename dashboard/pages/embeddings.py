"""Embeddings: the UMAP maps of a run's item and user vectors, an item's nearest neighbours in each domain, and
the alignment figure (how much the domains mix in the model's space)."""
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import layout
from engine import api

ws = layout.workspace()
layout.header("Embeddings", "UMAP projections (cosine) of the item and user vectors a run learned; nearby points "
                            "are items the model treats as alike. Axes are UMAP's and carry no unit.")
TOP_COLOURS = 10  # a colouring with more values shows the most frequent ones and 'other'
DRAWN = 12_000    # points drawn by default: a seeded sample keeps the page quick; the toggle draws them all

with layout.readable_errors("Reading the maps"):
    runs = layout.done_runs(ws, layout.VECTOR_MODELS)
    if runs.empty:
        st.info(f"No finished run of a model with item vectors ({', '.join(layout.VECTOR_MODELS)}) yet: train one "
                f"on the **Train** page; its maps are computed when training ends.")
        st.stop()
    without, runs = runs[~runs["maps"]], runs[runs["maps"]]
    if len(without):
        with st.expander(f"{len(without)} run(s) have no maps yet (benchmark runs skip them)",
                         expanded=runs.empty):
            pending = layout.pick_run(without, "Run without maps")
            if st.button("Compute its maps in the background", icon=":material/play_arrow:"):
                job = api.start_maps(pending, ws)
                st.success(f"Started job `{job['id']}`; the **Train** page shows its progress (UMAP takes a few "
                           f"minutes on the shipped data).")
    if runs.empty:
        st.stop()
    run_id = layout.pick_run(runs)
    data = layout.maps(ws, run_id)
    items, users, summary = data["items"], data["users"], data["summary"]

    cross_domain = items["domain"].nunique() > 1  # a model of the target items alone has no alignment to show
    cols = st.columns(4 if cross_domain else 2)
    if cross_domain:
        cols[-4].metric("Cross-domain neighbours", f"{100 * summary['alignment']:.2f} %",
                        help=f"mean share of an item's {summary['k']} nearest neighbours (cosine) that come from "
                             f"another domain")
        cols[-3].metric("If fully mixed", f"{100 * summary['expected_mixed']:.2f} %")
    cols[-2].metric("Items mapped", f"{summary['items_mapped']:,} / {summary['items']:,}")
    cols[-1].metric("Users mapped", f"{summary['users_mapped']:,}")
    per_domain = summary.get("per_domain", {})
    if per_domain and cross_domain:
        st.caption(" · ".join(f"{d}: {100 * v['alignment']:.2f} % cross-domain "
                              f"(mixed: {100 * v['expected_mixed']:.2f} %)" for d, v in per_domain.items()))

    left, right = st.columns([1, 2])
    filled = [c for c in ("category", "brand") if c in items and items[c].fillna("").ne("").any()]
    colour_by = left.segmented_control("Colour items by", ["domain", *filled], default="domain",
                                       help="only the attributes this run's items have")
    colour_by = colour_by or "domain"
    level = None
    if colour_by == "category":
        depth = int(items["category"].fillna("").str.count(" > ").max()) + 1
        level = left.slider("Category level", 1, depth, 1, help="1: the top of each category path") \
            if depth > 1 else 1
    query = right.text_input("Find an item (title or id)", placeholder="e.g. stapler")
    picked = None
    if query:
        found = items[items["title"].str.contains(query, case=False, regex=False) |
                      (items["item_id"].astype(str) == query)].head(50)
        if found.empty:
            right.warning(f"No mapped item matches '{query}'.")
        else:
            row = right.selectbox(f"{len(found)} match(es)", found.index,
                                  format_func=lambda i: f"{found.at[i, 'title']} · {found.at[i, 'domain']} · "
                                                        f"{found.at[i, 'item_id']}")
            picked = found.loc[[row]]

    shown = items
    if len(items) > DRAWN and not st.toggle(f"Draw all {len(items):,} mapped items (slower)", key="all-items"):
        shown = items.sample(DRAWN, random_state=0)  # the searched item is drawn on top in any case
    shown = shown.copy()
    values = shown[colour_by].fillna("")
    if level:
        values = values.str.split(" > ").str[:level].str.join(" > ")
    values = values.replace("", "(none)")
    frequent = values.value_counts().index[:TOP_COLOURS]
    shown["colour"] = values.where(values.isin(frequent), "other")
    fig = px.scatter(shown, x="x", y="y", color="colour", render_mode="webgl", opacity=0.55,
                     hover_name="title", hover_data={"domain": True, "category": True, "brand": True, "item_id": True,
                                                     "x": False, "y": False, "colour": False},
                     color_discrete_sequence=layout.PALETTE,
                     category_orders={"colour": [*frequent, "other"]},
                     title=f"Items by {colour_by} ({len(shown):,} of {len(items):,} mapped items drawn)")
    fig.update_traces(marker=dict(size=3))
    if picked is not None:
        fig.add_trace(go.Scattergl(x=picked["x"], y=picked["y"], mode="markers", name="selected item",
                                   marker=dict(size=18, symbol="star", color="#ffd43b", line=dict(width=2,
                                                                                                  color="#1b1f24")),
                                   hovertext=picked["title"]))
    fig.update_layout(legend_title_text=colour_by)
    st.plotly_chart(layout.style(fig, "UMAP 1", "UMAP 2", 620), width="stretch", key="item-map")

    if picked is not None:
        row = picked.iloc[0]
        st.subheader(f"Nearest to “{row['title']}” ({row['domain']})")
        near = layout.neighbours(ws, run_id, str(row["item_id"]))
        cols = st.columns(near["domain"].nunique())
        for col, (domain, part) in zip(cols, near.groupby("domain", sort=False)):
            col.markdown(f"**in {domain}**")
            layout.table(part[["rank", "title", "similarity"]], col, hide_index=True, width="stretch",
                          column_config={"similarity": st.column_config.ProgressColumn(
                              "cosine", min_value=-1.0, max_value=1.0, format="%.3f")})

    if len(users):
        fig = px.scatter(users, x="x", y="y", color="segment", render_mode="webgl", opacity=0.6,
                         hover_name="user_id", color_discrete_map=layout.SEGMENT_COLOURS,
                         title=f"Test users' target-domain vectors ({len(users):,}; cold users have no target "
                               f"history)")
        fig.update_traces(marker=dict(size=4))
        st.plotly_chart(layout.style(fig, "UMAP 1", "UMAP 2", 480), width="stretch", key="user-map")
    else:
        st.caption("This model has no user vectors to map.")
