"""Datasets: upload a domain (validated; nothing stored on error), its profile, users shared across domains,
and deleting a domain."""

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import layout, upload
from engine import api

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
    shared = layout.shared_users(ws, tuple(d["version"] for d in datasets))
    fig = px.imshow(shared, text_auto=",d", color_continuous_scale="Purples", aspect="auto",
                    title="Users shared by two domains (diagonal: users of the domain)")
    right.plotly_chart(layout.style(fig, "domain", "domain", 320), width="stretch")

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
