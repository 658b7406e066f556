"""The dashboard in a real browser (Debian Chromium driven by Playwright): upload two domains through the page's
file inputs, launch a short training and a tuning study from the Train page, wait for them, then check Compare
(with where one run beats the other), Embeddings and Explain; then upload a domain that shares no user (its launch
is refused) and a titles-only domain, and train, map and explain on that one too. A screenshot of every page goes
to tests/artifacts/, and the seconds each page took to show its content to tests/artifacts/page_timings.json
(reported, not asserted: it depends on the machine's load)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from engine import api
from tests.e2e.browser import ARTIFACTS, CHROMIUM, chromium_page, dashboard, open_page, plot_points, settled, shot

TRAINING_LIMIT = 600  # seconds for the job (a first MiniLM export and numba compilation included)

if not Path(CHROMIUM).exists():
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"CI=true but Chromium is not at {CHROMIUM}: .ci/run installs Debian's chromium package.")
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; see DEVELOPERS.md)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("e2e-workspace")
    with dashboard(workspace, workspace.parent / "server.log") as base:
        yield base, workspace


@pytest.fixture(scope="module")
def page(server):
    with chromium_page() as page:
        yield page


@pytest.fixture(scope="module")
def files(tmp_path_factory, domains):
    folder = tmp_path_factory.mktemp("e2e-files")
    paths = {}
    for name, (inter, items) in domains.items():
        inter.to_csv(folder / f"{name}_interactions.csv", index=False)
        items.to_csv(folder / f"{name}_items.csv", index=False)
        paths[name] = (folder / f"{name}_interactions.csv", folder / f"{name}_items.csv")
    inter, items = domains["tgt"]
    strangers = inter.assign(user_id="stranger-" + inter["user_id"], item_id="apart-" + inter["item_id"])
    strangers.to_csv(folder / "apart_interactions.csv", index=False)
    items.assign(item_id="apart-" + items["item_id"]).to_csv(folder / "apart_items.csv", index=False)
    paths["apart"] = (folder / "apart_interactions.csv", folder / "apart_items.csv")  # shares no user
    inter.assign(item_id="note-" + inter["item_id"]).to_csv(folder / "notes_interactions.csv", index=False)
    items.assign(item_id="note-" + items["item_id"])[["item_id", "title"]].to_csv(folder / "notes_items.csv",
                                                                                  index=False)
    paths["notes"] = (folder / "notes_interactions.csv", folder / "notes_items.csv")  # titles only
    bad = folder / "broken_interactions.csv"
    bad.write_text("user_id,product\nu1,a\nu2,b\n")
    paths["bad"] = (bad, None)
    return paths


def test_upload_train_and_inspect_in_a_browser(server, page, files):
    try:
        timings = walk_through(*server, page, files)
    except Exception:
        shot(page, "failure")  # what the page showed when a step failed
        raise
    (ARTIFACTS / "page_timings.json").write_text(json.dumps(timings, indent=2))
    print("\nseconds until each page showed its content / finished drawing:", json.dumps(timings))


def choose(page, label: str, option: str) -> None:
    """Pick an option of the Streamlit selectbox whose label starts with `label`."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
    page.locator("[role='option']").filter(has_text=option).first.click()
    settled(page)


def train_lmkg(page, workspace: Path, epochs: int) -> str:
    """Launch one short lmkg job from the Train page as it stands (no baselines), wait for it; returns its id."""
    field = page.locator("input[aria-label^='Epochs']")
    field.fill(str(epochs))
    field.press("Enter")
    settled(page)
    page.locator("label").filter(has_text="Also train the baselines").click()  # one job: its card keeps its curves
    settled(page)
    before = {j["id"] for j in api.jobs(workspace)}
    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("Started 1 job(s)").wait_for()
    job = next(j["id"] for j in api.jobs(workspace) if j["id"] not in before)
    # the jobs fragment redraws every 2 s: for a moment the old chart (hidden) and the new one are both there
    page.locator(f".st-key-curves-{job} .js-plotly-plot:visible").first.wait_for(timeout=TRAINING_LIMIT * 1000)
    wait_for_job(workspace, job)
    settled(page)
    return job


def wait_for_job(workspace: Path, job: str) -> None:
    deadline = time.time() + TRAINING_LIMIT
    while api.job(job, workspace)["status"] in api.JOB_ACTIVE and time.time() < deadline:
        time.sleep(1)
    assert api.job(job, workspace)["status"] == "done", api.job_log(job, workspace)


def walk_through(base: str, workspace: Path, page, files) -> dict:
    timings = {}

    def visit(path: str, ready: str, name: str) -> None:
        timings[name] = open_page(page, base, path, ready)

    def upload(name: str, interactions: Path, items: Path | None) -> None:
        """One domain through a freshly loaded Datasets page (its upload panel opened if folded)."""
        visit("datasets", "h1:has-text('Datasets')", "datasets")
        if page.locator("[data-testid='stExpander'] details").first.get_attribute("open") is None:
            page.get_by_text("Upload a domain").click()
        page.get_by_label("Domain name", exact=True).fill(name)
        uploaders = page.locator("[data-testid='stFileUploader']")
        for label, path in (("Interactions (required)", interactions), ("Items (optional)", items)):
            if path is not None:  # the file goes to the server by its own request: submit only after it arrived
                with page.expect_response(lambda r: "upload_file" in r.url and r.request.method == "PUT"):
                    uploaders.filter(has_text=label).locator("input[type=file]").set_input_files(str(path))
        page.get_by_role("button", name="Validate and store").click()

    visit("", "h1:has-text('Overview')", "overview (empty workspace)")
    page.get_by_text("No datasets yet").wait_for()
    shot(page, "01-overview-empty")

    upload("broken", *files["bad"])
    page.get_by_text("Nothing was stored").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()  # the problems table
    page.get_by_text("required column 'item_id' not found").wait_for(state="attached")  # a grid cell
    shot(page, "02-datasets-invalid-upload")
    assert not any((workspace / "datasets").iterdir())
    for name in ("src", "tgt"):
        upload(name, *files[name])
        page.get_by_text(f"Stored '{name}'").wait_for()
        settled(page)
    visit("datasets", "text=Users shared by two domains", "datasets")
    shot(page, "03-datasets")

    visit("train", "h1:has-text('Train')", "train")
    job = train_lmkg(page, workspace, epochs=3)
    assert plot_points(page, f"curves-{job}") >= 2  # loss and validation, at least one epoch each
    shot(page, "04-train")

    choose(page, "Model", "itemknn")  # a study of a closed-form model: its trials take seconds
    page.get_by_text("Tune this model's settings on validation").click()
    trials = page.locator("input[aria-label^='Trials']")
    trials.fill("3")
    trials.press("Enter")
    settled(page)
    page.get_by_role("button", name="Start tuning").click()
    page.get_by_text("Started tuning job").wait_for()
    wait_for_job(workspace, next(j["id"] for j in api.jobs(workspace) if j["spec"]["kind"] == "tune"))
    study = api.studies(workspace)[-1]
    page.locator(f".st-key-trials-{study['id']} .js-plotly-plot:visible").first.wait_for()
    assert plot_points(page, f"trials-{study['id']}") >= 3  # one point per trial, and the best so far
    shot(page, "09-tune")

    visit("compare", "[data-testid='stPlotlyChart']", "compare")
    page.get_by_text("Paired significance").wait_for()
    page.locator(".st-key-where-a-beats-b .js-plotly-plot").wait_for()  # lmkg against the tuned itemknn
    assert page.locator(".js-plotly-plot").count() >= 3  # metrics per segment, metric@K curve, where A beats B
    shot(page, "05-compare")

    visit("embeddings", ".st-key-item-map .js-plotly-plot", "embeddings")
    assert plot_points(page, "item-map") == 120  # the 60 items of each domain
    page.locator(".st-key-user-map .js-plotly-plot").wait_for()  # drawn after the item map, later on a busy machine
    assert plot_points(page, "user-map") > 0
    search = page.locator("input[aria-label^='Find an item']")
    search.fill("tgt item 3 ")
    search.press("Enter")
    page.get_by_text("Nearest to").wait_for()
    settled(page)
    shot(page, "06-embeddings")

    visit("explain", ".st-key-shap-chart .js-plotly-plot", "explain")
    page.locator(".st-key-lime-chart .js-plotly-plot").wait_for()
    assert plot_points(page, "shap-chart") > 0 and plot_points(page, "lime-chart") > 0
    page.get_by_text("SHAP additivity error").wait_for()
    shot(page, "07-explain")

    for name in ("apart", "notes"):
        upload(name, *files[name])
        page.get_by_text(f"Stored '{name}'").wait_for()
        settled(page)
    page.get_by_text("has no attribute columns").first.wait_for()  # the titles-only warning
    visit("train", "h1:has-text('Train')", "train")
    choose(page, "Target domain", "apart")
    page.get_by_text("share no user").wait_for()
    assert page.get_by_role("button", name="Launch training").is_disabled()
    shot(page, "10-train-refused")
    jobs_before = len(api.jobs(workspace))
    choose(page, "Target domain", "notes")
    train_lmkg(page, workspace, epochs=2)
    assert len(api.jobs(workspace)) == jobs_before + 1
    run = api.runs(workspace)[-1]
    assert run["scenario"]["target"] == "notes" and run["status"] == "done"

    visit("embeddings", ".st-key-item-map .js-plotly-plot", "embeddings (titles only)")  # the newest run first
    assert plot_points(page, "item-map") == 120
    shot(page, "11-embeddings-titles-only")
    visit("explain", ".st-key-shap-chart .js-plotly-plot", "explain (titles only)")
    picked = page.locator("[data-testid='stSelectbox']").filter(has_text="Run").first.locator("input")
    assert "src → notes" in picked.input_value()  # the newest run is picked first
    shot(page, "12-explain-titles-only")

    visit("", "text=Latest runs", "overview")
    shot(page, "08-overview")
    return timings
