"""Page timings in the browser on a real workspace (the shipped data after `make run`), for the report:

    .venv/bin/python tests/e2e/measure_pages.py [--workspace workspace] [--rounds 2]

Starts its own dashboard server on the workspace, opens every page with its default choices `--rounds` times
(round 1 finds the server's caches empty) and prints the seconds until the page's main content was visible and
until it had finished drawing. Screenshots go to tests/artifacts/shipped-*.png."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.browser import chromium_page, dashboard, open_page, shot  # noqa: E402

SELECT = "[data-testid='stSelectbox']:has-text('{}')"
# page: (path, its first control, its main content)
PAGES = {"overview": ("", "[data-testid='stMetric']", ".js-plotly-plot"),
         "datasets": ("datasets", "[data-testid='stExpander']", "text=Users shared by two domains"),
         "train": ("train", "button:has-text('Launch training')", "text=Jobs"),
         "compare": ("compare", SELECT.format("Scenario"), ".js-plotly-plot"),
         "embeddings": ("embeddings", SELECT.format("Run"), ".st-key-item-map .js-plotly-plot"),
         "explain": ("explain", SELECT.format("User ("), ".st-key-shap-chart .js-plotly-plot")}
STEPS = ("interactive", "content", "settled")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", default="workspace")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, \
            dashboard(Path(args.workspace).resolve(), Path(tmp) / "server.log") as base, chromium_page() as page:
        for round_ in range(1, args.rounds + 1):
            for name, (path, interactive, ready) in PAGES.items():
                rows.setdefault(name, []).append(open_page(page, base, path, ready, interactive))
                if round_ == args.rounds:
                    shot(page, f"shipped-{name}")
    print("seconds until the page's first control / its main content / everything was drawn; round 1 finds the "
          "server's caches empty")
    print(f"{'page':<12}" + "".join(f"{f'round {r} ' + step:>20}" for r in range(1, args.rounds + 1)
                                    for step in STEPS))
    for name, timings in rows.items():
        print(f"{name:<12}" + "".join(f"{t[step]:>19.2f}s" for t in timings for step in STEPS))


if __name__ == "__main__":
    main()
