"""Serve the dashboard: `python -m dashboard [streamlit options]` (what `make run` does).

`streamlit run dashboard/app.py` would import torch, the engine and SHAP inside the first page view after a start
(about 10 s on two cores); importing them before the server listens makes every first view as fast as a later one.
Streamlit runs the pages in this process, so what is imported here is imported for them (the pages' own modules,
with their Streamlit caches, are left to Streamlit). Once the server runs, the run the Explain page opens first is
loaded in the background (seconds on the shipped data), so that its first explanation is quick too.
"""
import logging
import sys
import threading
import time
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def main() -> int:
    import plotly.express  # noqa: F401
    import shap  # noqa: F401  (seconds: the first explanation's)
    from streamlit.web import cli

    import engine.api  # noqa: F401  (torch and every model)
    threading.Thread(target=load_first_explained_run, daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    return cli.main()


def load_first_explained_run() -> None:
    """Fill the dashboard's cache of loaded runs with the Explain page's first run, once Streamlit's runtime (and
    with it the caches) exists."""
    from streamlit import runtime
    while not runtime.exists():
        time.sleep(0.2)
    # this thread reads the caches outside any page's run, which Streamlit would warn of on every read
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    from dashboard import layout  # after the runtime: its caches belong to it
    try:
        ws = layout.workspace()
        first = layout.done_runs(ws, layout.HISTORY_MODELS)
        if len(first):
            layout.loaded(ws, first.iloc[0]["run"])
    except Exception:  # noqa: BLE001  (the page itself shows why that run cannot be loaded)
        pass


if __name__ == "__main__":
    sys.exit(main())
