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

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def auth_configured() -> bool:
    """Whether Streamlit's OIDC login (st.login) has its [auth] section in .streamlit/secrets.toml."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001  (no secrets file at all)
        return False


# Uploads, deletions and training are open to whoever reaches the server: beyond this machine, only after login.
if st.get_option("server.address") not in LOOPBACK:
    if not auth_configured():
        st.error(f"CrossLens is served on {st.get_option('server.address') or 'every network interface'} without "
                 f"authentication, so it refuses to serve. Serve on 127.0.0.1 (the default), or configure login: an "
                 f"[auth] section in .streamlit/secrets.toml for Streamlit's st.login with your OIDC provider "
                 f"(README, 'Serving beyond this machine').")
        st.stop()
    if not st.user.is_logged_in:
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()

PAGES = Path(__file__).resolve().parent / "pages"
st.navigation([
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/space_dashboard:", default=True),
    st.Page(PAGES / "datasets.py", title="Datasets", icon=":material/database:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page(PAGES / "embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page(PAGES / "explain.py", title="Explain", icon=":material/psychology_alt:"),
]).run()
