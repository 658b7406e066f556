"""Datasets: upload a domain (validated; nothing stored on error), its profile, users shared across domains,
and deleting a domain."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import layout, upload
from engine import api

DISTRIBUTIONS = {"interactions_per_user": "interactions per user", "items_per_user": "distinct items per user",
                 "interactions_per_item": "interactions per item", "users_per_item": "distinct users per item"}


def amount(value: float) -> str:
    """A count as words read it: whole numbers without decimals (percentiles can fall between two counts)."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def percent(label: str) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(label, format="percent")


OVERLAP_COLUMNS = {"domain_a": "domain A", "domain_b": "domain B", "shared_users": "shared users"} | {
    column: config for side in ("a", "b") for column, config in (
        (f"share_of_{side}_users", percent(f"of {side.upper()}'s users")),
        (f"interactions_in_{side}", f"their interactions in {side.upper()}"),
        (f"share_of_{side}_interactions", percent(f"of {side.upper()}'s interactions")))}

ws = layout.workspace()
layout.header("Datasets", "Each domain is one dataset: interactions, optional item attributes and knowledge-graph "
                          "triples. Users are linked across domains by equal user_id.")

with st.expander("Upload a domain", expanded=not layout.datasets(ws), icon=":material/upload:"):
    st.markdown("Files may be **CSV, TSV, Parquet** or **RecBole atomic files** (`.inter`, `.item`, `.kg` with its "
                "`.link`). Interactions need `user_id` and `item_id` (optional `timestamp`, `rating`); items need "
                "`item_id` and `title` (other columns become attributes: `|` separates values, ` > ` category "
                "levels); triples need `head`, `relation`, `tail`.")
    with st.form("upload", clear_on_submit=False):
        name = st.text_input("Domain name", placeholder="e.g. books", help="letters, digits, - and _")
        left, right = st.columns(2)
        inter = left.file_uploader("Interactions (required)", type=["csv", "tsv", "txt", "parquet", "inter"])
        items = right.file_uploader("Items (optional)", type=["csv", "tsv", "txt", "parquet", "item"])
        kg = left.file_uploader("Knowledge-graph triples (optional)", type=["csv", "tsv", "txt", "parquet", "kg"])
        link = right.file_uploader("RecBole .link for the .kg (optional)", type=["link"])
        submitted = st.form_submit_button("Validate and store", type="primary", icon=":material/check:")


def store(replace: bool) -> None:
    with layout.readable_errors("Storing the dataset"), api.upload_folder(ws) as folder:
        paths = {"interactions": upload.save(inter, folder, "interactions.csv")}
        if items is not None:
            paths["items"] = upload.save(items, folder, "items.csv")
        if kg is not None:
            paths["kg"] = upload.save(kg, folder, "triples.csv")
            if link is not None:
                upload.save(link, folder, "triples.link", stem=paths["kg"].stem)
        try:
            with st.spinner("Validating ..."):
                record = api.ingest(name.strip(), paths["interactions"], paths.get("items"), paths.get("kg"),
                                    workspace=ws, replace=replace)
        except api.DatasetError as err:
            st.error(f"Nothing was stored: {len(err.problems)} problem(s) to fix in the files.")
            layout.table(pd.DataFrame([{"file": p.file, "rows": ", ".join(map(str, p.rows[:10])) +
                                        (f" (+{p.n_rows - len(p.rows)} more)" if p.n_rows > len(p.rows) else ""),
                                        "column": p.column or "", "problem": p.problem, "fix": p.fix}
                                       for p in err.problems]), hide_index=True, width="stretch")
        else:
            layout.datasets.clear()
            st.success(f"Stored '{record['name']}': {record['n_users']:,} users, {record['n_items']:,} items, "
                       f"{record['n_interactions']:,} interactions, {record['n_triples']:,} triples.")
            for warning in record["warnings"]:
                st.warning(warning)


if submitted:
    st.session_state.pop("replacing", None)
    existing = {d["name"]: d for d in layout.datasets(ws)}
    if not name or inter is None:
        st.warning("Give the domain a name and choose its interactions file.")
    elif name.strip() in existing:  # replacing needs a confirmation that names the runs it concerns
        st.session_state["replacing"] = existing[name.strip()]
    else:
        store(replace=False)
if old := st.session_state.get("replacing"):
    using = api.runs_using(old["name"], ws, old["version"])
    st.warning(f"A domain named '{old['name']}' exists already. Replacing it makes this upload its current version. "
               + (f"The {len(using)} run(s) trained on it keep the old version, so they still recommend, explain "
                  f"and export: " + ", ".join(f"`{r['id']}` ({r['model']})" for r in using[:20])
                  + (" ..." if len(using) > 20 else "") if using else "No run was trained on it; it is removed."))
    confirm, cancel = st.columns(2)
    if confirm.button(f"Replace '{old['name']}'", type="primary", icon=":material/sync:"):
        st.session_state.pop("replacing")
        store(replace=True)
    if cancel.button("Keep the stored one"):
        st.session_state.pop("replacing")
        st.rerun()

with layout.readable_errors("Reading the datasets"):
    datasets = layout.datasets(ws)
    if not datasets:
        st.info("No datasets yet: upload a domain above.")
        st.stop()

    names = [d["name"] for d in datasets]
    chosen = st.segmented_control("Domain", names, default=names[0], key="dataset")
    record = next(d for d in datasets if d["name"] == (chosen or names[0]))
    prof = layout.profile(ws, record["name"], record["version"])
    versions = tuple(d["version"] for d in datasets)

    cols = st.columns(6)
    cols[0].metric("Users", f"{prof['n_users']:,}")
    cols[1].metric("Items", f"{prof['n_items']:,}")
    cols[2].metric("Interactions", f"{prof['n_interactions']:,}")
    cols[3].metric("Sparsity", f"{100 * prof['sparsity']:.3f} %")
    cols[4].metric("Interactions / user", f"{prof['interactions_per_user']:.1f}")
    cols[5].metric("KG triples", f"{prof['n_triples']:,}")
    for warning in prof["warnings"]:
        st.caption(f"⚠️ {warning}")

    left, right = st.columns(2)
    if prof["attribute_coverage"]:
        cov = pd.DataFrame({"column": list(prof["attribute_coverage"]),
                            "share": [100 * v for v in prof["attribute_coverage"].values()]})
        fig = px.bar(cov, x="share", y="column", orientation="h", title="Item columns filled",
                     color_discrete_sequence=[layout.PALETTE[3]], range_x=[0, 100])
        left.plotly_chart(layout.style(fig, "items with a value (%)", None, 320), width="stretch")
    else:
        left.info("No items file: the model has no item text or attributes for this domain.")
    tail = prof["long_tail"]
    head_pct = 100 * tail["head_fraction"]
    fig = px.line(tail["curve"], x="items_pct", y="interactions_pct", color_discrete_sequence=[layout.PALETTE[0]],
                  title="Long tail of item popularity")
    fig.add_scatter(x=[0, 100], y=[0, 100], mode="lines", name="equal popularity", hoverinfo="skip",
                    line=dict(color=layout.PALETTE[-1], dash="dot", width=1))
    fig.add_scatter(x=[head_pct], y=[100 * tail["head_share"]], mode="markers+text", showlegend=False,
                    text=[f"top {head_pct:.0f} %: {100 * tail['head_share']:.0f} %"], textposition="bottom right",
                    marker=dict(color=layout.PALETTE[1], size=9))
    fig.update_layout(showlegend=False)
    right.plotly_chart(layout.style(fig, "top items, by interactions (%)", "interactions covered (%)", 320),
                       width="stretch")

    dist, never = prof["distributions"], tail["items_without_interactions"]
    users, per_item = dist["interactions_per_user"], dist["interactions_per_item"]
    st.caption(" ".join([
        f"Half the users have at most {amount(users['median'])} interactions (the middle half "
        f"{amount(users['p25'])}–{amount(users['p75'])}, 90 % at most {amount(users['p90'])}, the most active "
        f"{amount(users['max'])}), over a median of {amount(dist['items_per_user']['median'])} distinct items.",
        f"Half the items have at most {amount(per_item['median'])} interactions (90 % at most "
        f"{amount(per_item['p90'])}, the most popular {amount(per_item['max'])}); "
        + (f"{never:,} of the {prof['n_items']:,} items have none." if never else "every item has some."),
        f"The top {head_pct:.0f} % of the items get {100 * tail['head_share']:.0f} % of the interactions; the last "
        f"{head_pct:.0f} % of the interactions spread over {100 * tail['tail_item_share']:.0f} % of the items."]))

    left, right = st.columns(2)
    bins = prof["histograms"]
    per_user = pd.concat([bins["interactions_per_user"].assign(counted="interactions"),
                          bins["items_per_user"].assign(counted="distinct items")]).sort_values("low", kind="stable")
    fig = px.bar(per_user, x="bin", y="count", color="counted", barmode="group", log_y=True,
                 category_orders={"bin": list(dict.fromkeys(per_user["bin"])),
                                  "counted": ["interactions", "distinct items"]},
                 color_discrete_sequence=layout.PALETTE, title="Users by interactions and history length")
    fig.update_layout(legend=dict(title=None, y=0.98, x=0.98, xanchor="right", yanchor="top"))
    fig.update_yaxes(dtick=1)  # log ticks at powers of ten only
    left.plotly_chart(layout.style(fig, "interactions (or distinct items) per user", "users (log)", 320),
                      width="stretch")
    fig = px.bar(bins["interactions_per_item"], x="bin", y="count", log_y=True, title="Items by interactions",
                 color_discrete_sequence=[layout.PALETTE[2]])
    fig.update_yaxes(dtick=1)
    right.plotly_chart(layout.style(fig, "interactions per item", "items (log)", 320), width="stretch")

    st.markdown("**Percentiles**")
    layout.table(pd.DataFrame(prof["distributions"]).T.rename(index=DISTRIBUTIONS), width="stretch",
                 column_config={"mean": st.column_config.NumberColumn(format="%.1f")})
    st.markdown("**Most interacted items**")
    layout.table(prof["top_items"], hide_index=True, width="stretch",
                 column_config={"users": st.column_config.NumberColumn("distinct users"),
                                "share": percent("share of interactions")})

    st.markdown("**Users shared by two domains**")
    shared = layout.shared_users(ws, versions)
    if len(shared) < 2:
        st.info("Only one domain: upload another to see which users the domains share.")
    else:
        if len(shared) > 2:  # of two domains the table says it all: their heatmap is one number, one colour
            fig = px.imshow(shared.div(np.diag(shared), axis=0), zmin=0, zmax=1, color_continuous_scale="Purples",
                            aspect="auto", title="Colour: share of the row domain's users (diagonal: its users)")
            fig.update_traces(text=shared.to_numpy(), texttemplate="%{text:,d}",
                              hovertemplate="%{y} and %{x}: %{text:,d} users (%{z:.0%} of %{y}'s)<extra></extra>")
            fig.update_coloraxes(colorbar=dict(title="share", tickformat=".0%"))
            st.plotly_chart(layout.style(fig, "domain", "domain", 320), width="stretch")
        layout.table(layout.domain_overlap(ws, versions), hide_index=True, width="stretch",
                     column_config=OVERLAP_COLUMNS)

    tabs = st.tabs(["Interactions (first rows)", "Items (first rows)"])
    layout.table(prof["preview"]["interactions"], tabs[0], hide_index=True, width="stretch")
    if prof["preview"]["items"] is not None:
        layout.table(prof["preview"]["items"], tabs[1], hide_index=True, width="stretch")
    else:
        tabs[1].info("This domain has no items file.")

    with st.expander(f"Delete '{record['name']}'", icon=":material/delete:"):
        using = api.runs_using(record["name"], ws)
        if using:
            st.warning(f"{len(using)} run(s) use this dataset and could no longer be loaded (their metrics stay): "
                       + ", ".join(f"`{r['id']}` ({r['model']})" for r in using[:20])
                       + (" ..." if len(using) > 20 else ""))
        sure = st.checkbox(f"Yes, delete the '{record['name']}' domain", key=f"sure-{record['name']}")
        if st.button("Delete dataset", disabled=not sure, type="primary", key=f"delete-{record['name']}"):
            api.delete_dataset(record["name"], ws)
            layout.datasets.clear()
            st.session_state.pop("dataset", None)
            st.rerun()
