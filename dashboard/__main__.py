"""Serve the dashboard: `python -m dashboard [streamlit options]` (what `make run` does).

`streamlit run dashboard/app.py` would import torch, the engine and SHAP inside the first page view after a start
(about 10 s on two cores); importing them before the server listens makes every first view as fast as a later one.
Streamlit runs the pages in this process, so what is imported here is imported for them (the pages' own modules,
with their Streamlit caches, are left to Streamlit).
"""
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def main() -> int:
    import plotly.express  # noqa: F401
    import shap  # noqa: F401  (seconds: the first explanation's)
    from streamlit.web import cli

    import engine.api  # noqa: F401  (torch and every model)
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
