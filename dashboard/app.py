"""CrossLens dashboard: `streamlit run dashboard/app.py` (or `make run`). Navigation and the shared frame only;
every page lives in dashboard/pages and reads the workspace through engine.api."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `streamlit run` does not put the repository on the path

st.set_page_config(page_title="CrossLens", page_icon=str(ROOT / "assets" / "logo-icon.svg"), layout="wide")
st.logo(str(ROOT / "assets" / "logo.svg"), icon_image=str(ROOT / "assets" / "logo-icon.svg"), size="large")

PAGES = Path(__file__).resolve().parent / "pages"
st.navigation([
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/space_dashboard:", default=True),
    st.Page(PAGES / "datasets.py", title="Datasets", icon=":material/database:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page(PAGES / "embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page(PAGES / "explain.py", title="Explain", icon=":material/psychology_alt:"),
]).run()
