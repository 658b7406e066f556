"""What every page shares: the workspace it reads, cached reads through engine.api, readable errors, chart style.

Pages hold no ML logic: everything they show comes from engine.api. Reads are cached (`st.cache_data`, keyed by
the workspace and by dataset versions or run ids, which never change meaning) so pages answer fast; the list
reads expire after a couple of seconds so new runs and jobs appear by themselves.
"""
from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine import api

SEGMENTS = ("warm", "cold", "all")
SEGMENT_COLOURS = {"warm": "#1f6feb", "cold": "#e8590c", "all": "#7048e8"}
SEGMENT_GROUPS = {"users": "Users", "items": "Held-out item's popularity", "activity": "User activity"}  # labels
PALETTE = ["#1f6feb", "#e8590c", "#2f9e44", "#7048e8", "#c2255c", "#0c8599", "#f08c00", "#5c940d", "#862e9c",
           "#364fc7", "#a61e4d", "#495057"]
MODELS = api.models()
HISTORY_MODELS = [m for m, about in MODELS.items() if about["explainable"]]  # their recommendations can be explained
VECTOR_MODELS = [m for m, about in MODELS.items() if about["item_vectors"]]  # their runs get embedding maps


def workspace() -> str:
    return api.workspace_folder()


def header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


@contextmanager
def readable_errors(doing: str):
    """Show a failure inside the block as a message on the page: the engine's own words for bad input, the
    error's name and text for anything else; never a traceback."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError) as err:  # CrossLensError and DatasetError are ValueErrors
        st.error(err.args[0] if isinstance(err, KeyError) and err.args else str(err))
    except Exception as err:  # noqa: BLE001  (Streamlit's rerun/stop signals are BaseExceptions and pass through)
        st.error(f"{doing} failed: {type(err).__name__}: {err}")


def table(rows, where=st, **options) -> None:
    """st.dataframe of rows whose text cells cannot run as formulas in a spreadsheet (its CSV download included)."""
    where.dataframe(api.safe_table(rows), **options)


def style(fig: go.Figure, x: str | None = None, y: str | None = None, height: int = 380) -> go.Figure:
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=10, r=10, t=50, b=10),
                      font=dict(size=13), title_font_size=15)
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def distinct(labels: list[str]) -> list[str]:
    """Labels as given, a repeated one numbered ("... (2)"), so that a chart never merges two features into a bar."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def direction(source: str, target: str) -> str:
    return f"{source.replace(',', ' + ')} → {target}"


def short_label(row) -> str:
    """A run's name if it has one, else its model and changed settings."""
    return row["name"] if isinstance(row.get("name"), str) else row.get("variant", row["model"])


def run_label(row) -> str:
    name = f"{row['name']} · " if isinstance(row.get("name"), str) else ""
    return (f"{name}{row.get('variant', row['model'])} · {direction(row['source'], row['target'])} · seed "
            f"{row['seed']} · {row['run']}")


def segment_groups(segments) -> dict[str, list[str]]:
    """{label: segments} of the segments some runs report: users (warm, cold, all), the held-out item's popularity
    buckets, the user-activity buckets (runs stored before buckets existed have users only)."""
    segments = dict.fromkeys(segments)
    groups = api.segment_groups(segments)
    groups["users"] = [s for s in SEGMENTS if s in segments]
    return {SEGMENT_GROUPS[g]: names for g, names in groups.items() if names}


def pick_run(runs: pd.DataFrame, label: str = "Run", where=st, key: str | None = None) -> str:
    """A selectbox over runs (in the table's order); returns the chosen run's id."""
    labels = {run_label(r): r["run"] for _, r in runs.iterrows()}
    return labels[where.selectbox(label, list(labels), key=key)]


# ---- cached reads ---------------------------------------------------------------------------------------------
@st.cache_data(ttl=2, show_spinner=False)
def datasets(ws: str) -> list[dict]:
    return api.datasets(ws)


@st.cache_data(ttl=2, show_spinner=False)
def runs(ws: str) -> pd.DataFrame:
    return api.runs_table(ws)


def done_runs(ws: str, models=None) -> pd.DataFrame:
    """Finished runs (of some models) in the order pickers offer them: the baselines launched beside a model last,
    runs at their model's default settings before variants, newest first."""
    table = runs(ws)
    if table.empty:
        return table
    table = table[(table["status"] == "done") & (table["model"].isin(models) if models else True)]
    return table.assign(baseline=table["model"].isin(api.BASELINES), changed=table["variant"] != table["model"]) \
        .sort_values(["baseline", "changed", "created"], ascending=[True, True, False]) \
        .drop(columns=["baseline", "changed"])


@st.cache_data(max_entries=32, show_spinner=False)
def profile(ws: str, name: str, version: str) -> dict:
    return api.dataset_profile(name, ws)


@st.cache_data(max_entries=8, show_spinner=False)
def shared_users(ws: str, versions: tuple) -> pd.DataFrame:
    return api.shared_users(ws)


@st.cache_data(max_entries=8, show_spinner=False)
def domain_overlap(ws: str, versions: tuple) -> pd.DataFrame:
    return api.domain_overlap(ws)


@st.cache_data(max_entries=32, show_spinner="Splitting the scenario ...")
def scenario_preview(ws: str, sources: tuple, target: str, seed: int, cold: float, versions: tuple) -> dict:
    return api.scenario_preview(list(sources), target, seed, cold, ws)


def busiest_target(names: list[str], shared: pd.DataFrame) -> str:
    """The target of the two domains that share the most users (the later name of the pair; the first of equals)."""
    pairs = [(shared.loc[a, b], b) for i, a in enumerate(names) for b in names[i + 1:]]
    return max(pairs, key=lambda p: p[0])[1]


@st.cache_data(ttl=10, max_entries=64, show_spinner=False)
def estimate(ws: str, request: api.TrainRequest) -> dict | None:
    return api.estimate(request, ws)


@st.cache_data(max_entries=8, show_spinner=False)
def run_curves(ws: str, run_id: str) -> pd.DataFrame:
    return api.run_curves(run_id, ws)


@st.cache_data(max_entries=16, show_spinner=False)
def compare(ws: str, run_a: str, run_b: str, metric: str) -> dict:
    return api.compare(run_a, run_b, metric, ws)


@st.cache_data(ttl=2, show_spinner=False)
def metrics(ws: str) -> pd.DataFrame:
    return api.metrics_long(ws)


@st.cache_data(max_entries=4, show_spinner="Reading the embedding maps ...")
def maps(ws: str, run_id: str) -> dict:
    return api.read_maps(run_id, ws)


@st.cache_data(max_entries=64, show_spinner=False)
def neighbours(ws: str, run_id: str, item_id: str) -> pd.DataFrame:
    return api.domain_neighbours(run_id, item_id, workspace=ws)


@st.cache_data(max_entries=16, show_spinner=False)
def test_users(ws: str, run_id: str, segment: str | None) -> list[str]:
    return api.test_users(run_id, segment, ws)


@st.cache_resource(max_entries=2, show_spinner="Loading the run's model ...")
def loaded(ws: str, run_id: str) -> api.LoadedRun:
    return api.LoadedRun(run_id, ws)


@st.cache_data(max_entries=256, show_spinner=False)
def recommendations(ws: str, run_id: str, user: str, k: int) -> dict:
    return loaded(ws, run_id).recommend(user, k)


@st.cache_data(max_entries=256, show_spinner=False)
def history(ws: str, run_id: str, user: str) -> pd.DataFrame:
    return loaded(ws, run_id).history(user)


@st.cache_data(max_entries=128, show_spinner="Explaining: SHAP and LIME re-score the model on perturbed inputs ...")
def explanation(ws: str, run_id: str, user: str, item: str) -> dict:
    return loaded(ws, run_id).explain(user, item, "both")
