"""Every dashboard page through Streamlit's AppTest: empty and populated workspaces, the upload flow, launching a
job. The pages read a real workspace through engine.api (nothing mocked)."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine import api

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ["overview", "datasets", "train", "compare", "embeddings", "explain"]


@pytest.fixture
def app_workspace(tmp_path, monkeypatch, domain_files):
    """The app's workspace, a fresh folder holding the generated domains."""
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path))
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=tmp_path)
    return tmp_path


@pytest.fixture
def pop_run(app_workspace):
    """The app's workspace with one pop run on src -> tgt: (folder, run)."""
    return app_workspace, api.train("src", "tgt", "pop", workspace=app_workspace)


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    return at


def ended(ws, jobs: list[dict], limit: float = 180) -> list[dict]:
    """The jobs' records once none is active any more (or `limit` seconds have passed)."""
    deadline = time.time() + limit
    while any(api.job(j["id"], ws)["status"] in api.JOB_ACTIVE for j in jobs) and time.time() < deadline:
        time.sleep(0.3)
    return [api.job(j["id"], ws) for j in jobs]


def shown(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("info", "error", "warning", "success", "markdown", "caption")
                     for e in getattr(at, kind))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_workspace_with_guidance(page, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path))
    at = open_page(page)
    assert not at.exception and not at.error
    assert at.title[0].value and at.info, f"{page} shows no guidance on an empty workspace"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_populated_workspace(page, trained_workspace, monkeypatch):
    ws, runs = trained_workspace
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(ws))
    at = open_page(page)
    assert not at.exception and not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    if page == "overview":
        latest = at.dataframe[0].value
        assert {r["id"] for r in runs.values()} <= set(latest["run"])
        lmkg = latest[latest["run"] == runs["lmkg"]["id"]].iloc[0]
        assert lmkg["warm ndcg@10"] == pytest.approx(runs["lmkg"]["metrics"]["warm"]["ndcg@10"])
        assert len(charts) == 1
    elif page == "datasets":
        assert [m.value for m in at.metric][:2] == ["240", "60"]  # users and items of 'src'
        assert any(d.value.columns.tolist()[:2] == ["user_id", "item_id"] for d in at.dataframe)  # the preview
        assert len(charts) == 4  # attribute coverage, long tail, users' and items' histograms (two domains: a table)
    elif page == "train":
        assert "Launch training" in [b.label for b in at.button]
        assert at.selectbox[0].value == "tgt" and at.multiselect[0].value == ["src"]
    elif page == "compare":
        assert len(charts) == 3 and "Paired significance" in [h.value for h in at.subheader]  # + where A beats B
    elif page == "embeddings":
        assert len(charts) == 2 and at.metric[2].value == "120 / 120"  # items and users maps
        assert at.segmented_control[0].options == ["domain", "category"]  # these items have no brand
    elif page == "explain":
        assert len(charts) == 2  # SHAP and LIME
        assert at.metric[0].label == "Rank" and "Deletion check" in [m.label for m in at.metric]
        assert " ranks " in at.info[0].value and "credits mostly" in at.info[0].value
    assert "Traceback" not in shown(at)


def test_compare_offers_the_bucket_segments(trained_workspace, monkeypatch):
    ws, runs = trained_workspace
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(ws))
    at = open_page("compare")
    groups = at.segmented_control(key="segment-group")
    assert groups.options == ["Users", "Held-out item's popularity", "User activity"]
    for group, segment in (("Held-out item's popularity", "new+tail"), ("User activity", "users 3-5")):
        at = groups.set_value(group).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        bars = at.get("plotly_chart")[0].proto.spec
        assert f'"{segment}"' in bars and '"warm"' not in bars  # grouped bars over this group's segments
        assert segment in at.segmented_control(key=f"curve-segment-{group}").options
        groups = at.segmented_control(key="segment-group")
    significance = at.dataframe[-1].value
    assert {"all", "warm", "cold", "new+tail", "users 3-5"} <= set(significance["segment"])
    warm = significance.set_index("segment").loc["warm"]
    said = next(m.value for m in at.markdown if m.value.startswith("On warm users"))
    assert f"{warm['ndcg@10 run']:.4f}" in said and warm["verdict"].split(", ")[-1] in said  # the same ratio
    assert 0 <= warm["run better for"] + warm["reference better for"] <= 1


def test_a_run_is_named_tagged_and_noted_from_the_compare_page(pop_run):
    tmp_path, run = pop_run
    at = open_page("compare")
    at.text_input(key=f"name-{run['id']}").input("Floor")
    at.text_input(key=f"tags-{run['id']}").input("baseline, q4")
    at.text_area(key=f"note-{run['id']}").input("the model to beat")
    at = at.button(key="label-save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labelled = api.run(run["id"], tmp_path)
    assert (labelled["name"], labelled["tags"], labelled["note"]) == ("Floor", ["baseline", "q4"], "the model to beat")
    assert any(o.startswith("Floor · pop") for o in at.selectbox(key="label-run").options)
    at.text_input(key=f"tags-{run['id']}").input("q4")
    at = at.button(key="label-save").click().run()
    assert api.run(run["id"], tmp_path)["tags"] == ["q4"]


def test_every_users_recommendations_download_from_the_explain_page(trained_workspace, monkeypatch):
    ws, runs = trained_workspace
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(ws))
    at = open_page("explain")
    at = next(b for b in at.button if b.label == "Prepare the file").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    download = at.get("download_button")[0].proto
    assert download.label.startswith("Download ") and "recommendations of 240 users" in download.label


def test_chart_labels_never_merge_two_features():
    from dashboard import layout
    assert layout.distinct(["pens (office)", "categories: a > ...", "categories: a > ..."]) == [
        "pens (office)", "categories: a > ...", "categories: a > ... (2)"]


def upload(at: AppTest, name: str, files: dict) -> AppTest:
    at.text_input[0].input(name)
    for label, (filename, content) in files.items():
        next(u for u in at.get("file_uploader") if u.label.startswith(label)).set_value(
            (filename, content, "text/csv"))
    next(b for b in at.button if b.label == "Validate and store").click()
    return at.run()


def test_upload_stores_a_valid_domain_and_refuses_an_invalid_one_with_a_problem_table(tmp_path, monkeypatch,
                                                                                      domain_files):
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path))
    at = open_page("datasets")
    bad = upload(at, "broken", {"Interactions": ("../../etc/interactions.csv", b"user_id,product\nu1,a\n")})
    assert not bad.exception
    assert any("Nothing was stored" in e.value for e in bad.error)
    problems = bad.dataframe[0].value
    assert problems.iloc[0]["file"] == "interactions.csv"  # the uploaded name, without its folders
    assert problems.iloc[0]["column"] == "item_id" and "not found" in problems.iloc[0]["problem"]
    assert api.datasets(tmp_path) == []

    inter, items = domain_files["src"]
    good = upload(open_page("datasets"), "books", {"Interactions": ("inter.csv", inter.read_bytes()),
                                                   "Items": ("items.csv", items.read_bytes())})
    assert not good.exception and not good.error
    assert any("Stored 'books'" in s.value for s in good.success)
    assert [d["name"] for d in api.datasets(tmp_path)] == ["books"]


def test_launching_from_the_train_page_starts_a_job_per_seed_and_the_missing_baseline(app_workspace):
    tmp_path = app_workspace
    at = open_page("train")
    assert [m.value for m in at.metric][:3] == ["240", str(api.scenario_preview(["src"], "tgt", 0, 0.2, tmp_path)
                                                          ["warm_test_users"]), "24"]
    at.selectbox[1].select("pop")  # the model
    at.text_input[0].input("0, 1")  # the seeds
    next(b for b in at.button if b.label == "Launch training").click()
    at.run()
    assert not at.exception and any("Started 2 job(s)" in s.value and "itemknn (seed 1)" in s.value
                                    and "userknn (seed 1)" in s.value for s in at.success)
    jobs = api.jobs(tmp_path)
    assert sorted((j["spec"]["model"], j["spec"]["seed"]) for j in jobs) == [
        ("itemknn", 0), ("itemknn", 1), ("pop", 0), ("pop", 1), ("userknn", 0), ("userknn", 1)]
    assert {j["status"] for j in ended(tmp_path, jobs)} == {"done"}
    assert not api.missing_baselines(api.TrainRequest(["src"], "tgt", "lmkg", seed=1), tmp_path)


def test_a_pair_that_shares_no_user_cannot_be_launched(app_workspace, domains):
    tmp_path = app_workspace
    inter, items = domains["tgt"]
    inter.assign(user_id="stranger-" + inter["user_id"]).to_csv(tmp_path / "apart.csv", index=False)
    items.to_csv(tmp_path / "apart_items.csv", index=False)
    api.ingest("apart", tmp_path / "apart.csv", tmp_path / "apart_items.csv", workspace=tmp_path)
    at = open_page("train")
    assert at.selectbox[0].value == "tgt"  # the pair that shares the most users comes first
    at = at.selectbox[0].select("apart").run()
    assert at.metric[0].value == "0" and any("share no user" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Launch training").disabled
    assert api.jobs(tmp_path) == []


def test_a_model_whose_settings_are_chosen_on_validation_launches_with_its_defaults(app_workspace):
    tmp_path = app_workspace
    at = open_page("train")
    at = at.selectbox[1].select("content").run()
    assert at.number_input(key="content-power").value is None  # empty, "chosen on validation"
    at = next(b for b in at.button if b.label == "Launch training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = next(j for j in api.jobs(tmp_path) if j["spec"]["model"] == "content")
    assert job["spec"]["settings"] == {}
    for job in api.jobs(tmp_path):
        api.cancel_job(job["id"], tmp_path)


def test_every_setting_of_every_model_has_help_shown_on_the_train_page(app_workspace):
    missing = [f"{m}.{k}" for m, entry in api.models().items() for k, text in entry["help"].items() if not text]
    assert not missing
    at = open_page("train")
    assert at.number_input(key="lmkg-temperature").help == api.models()["lmkg"]["help"]["temperature"]


@pytest.mark.parametrize("address", ["0.0.0.0", ""])
def test_served_beyond_this_machine_without_login_the_app_refuses(address, tmp_path, monkeypatch):
    from streamlit import config
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(tmp_path))
    before = config.get_option("server.address")
    config.set_option("server.address", address)
    try:
        at = AppTest.from_file(APP, default_timeout=120).run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception and "refuses to serve" in at.error[0].value
    assert not at.title  # no page ran


def test_uploading_over_a_domain_asks_to_confirm_naming_its_runs(pop_run, domain_files):
    tmp_path, run = pop_run
    version = api.datasets(tmp_path)[1]["version"]
    inter, items = domain_files["tgt"]
    asked = upload(open_page("datasets"), "tgt", {"Interactions": ("inter.csv", inter.read_bytes()),
                                                  "Items": ("items.csv", items.read_bytes())})
    assert not asked.exception and not asked.error
    assert any("exists already" in w.value and run["id"] in w.value for w in asked.warning)
    assert api.datasets(tmp_path)[1]["version"] == version  # nothing changed before the confirmation
    kept = next(b for b in asked.button if b.label == "Keep the stored one").click().run()
    assert not any("exists already" in w.value for w in kept.warning)
    assert api.datasets(tmp_path)[1]["version"] == version
    asked = next(b for b in kept.button if b.label == "Validate and store").click().run()
    replaced = next(b for b in asked.button if b.label == "Replace 'tgt'").click().run()
    assert not replaced.exception and any("Stored 'tgt'" in s.value for s in replaced.success)
    assert api.datasets(tmp_path)[1]["version"] != version
    assert api.recommend(run["id"], api.test_users(run["id"], workspace=tmp_path)[0], workspace=tmp_path)["recommendations"]


def test_a_run_with_new_items_moved_up_is_derived_from_the_compare_page(app_workspace):
    parent = api.train("src", "tgt", "lmkg", epochs=1, settings={"dim": 16, "max_history": 20}, maps=False,
                       workspace=app_workspace)
    at = open_page("compare")
    at.number_input(key="derive-new-items").set_value(2.0)
    at = at.button(key="derive-start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [job] = [j for j in api.jobs(app_workspace) if j["spec"]["kind"] == "derive"]
    assert job["spec"]["run"] == parent["id"] and job["spec"]["settings"] == {"new_items": 2.0}
    [done] = ended(app_workspace, [job])
    assert done["status"] == "done", api.job_log(job["id"], app_workspace)
    assert api.run(done["run_id"], app_workspace)["config"]["params"]["new_items"] == 2.0


def test_a_run_is_deleted_from_the_compare_page_after_a_confirmation(pop_run):
    tmp_path, run = pop_run
    at = open_page("compare")
    delete = next(b for b in at.button if b.label == "Delete this run")
    assert delete.disabled
    at.checkbox(key="delete-sure").check().run()
    next(b for b in at.button if b.label == "Delete this run").click().run()
    assert not at.exception and api.runs(tmp_path) == []
    assert not (tmp_path / "runs" / run["id"]).exists()


def test_a_study_is_started_from_the_train_page_and_its_trials_are_shown(app_workspace):
    tmp_path = app_workspace
    at = open_page("train")
    at = at.selectbox[1].select("itemknn").run()  # closed form: the study's trials take a second each
    at.number_input(key="tune-trials").set_value(3)
    at = next(b for b in at.button if b.key == "tune-start").click().run()
    assert not at.exception and any("Started tuning job" in s.value for s in at.success)
    job = next(j for j in api.jobs(tmp_path) if j["spec"]["kind"] == "tune")
    assert (job["spec"]["model"], job["spec"]["trials"], job["spec"]["segment"]) == ("itemknn", 3, "all")
    assert ended(tmp_path, [job])[0]["status"] == "done", api.job_log(job["id"], tmp_path)
    study = api.studies(tmp_path)[-1]
    at = open_page("train")
    assert not at.exception and "Tuning studies" in [h.value for h in at.subheader]
    trials = next(d.value for d in at.dataframe if "valid NDCG@10" in d.value.columns)
    assert trials["valid NDCG@10"].tolist() == pytest.approx([t["value"] for t in study["trials"]])
    best = next(m for m in at.metric if m.label.startswith("Best trial (validation"))
    assert best.value == f"{study['best']['value']:.4f}"


def test_a_preset_sets_the_epochs_and_patience_it_launches_with_and_the_time_is_estimated(app_workspace):
    tmp_path = app_workspace
    at = open_page("train")
    at = at.selectbox[1].select("bpr").run()
    assert any("no time estimate" in c.value for c in at.caption)  # nothing measured on this workspace yet
    at = at.segmented_control(key="preset-bpr").set_value("quick").run()
    quick = api.models()["bpr"]["presets"]["quick"]
    assert at.number_input(key="bpr-epochs-quick").value == quick["epochs"]
    assert at.number_input(key="bpr-patience-quick").value == quick["patience"]
    at.checkbox[0].uncheck()  # no baselines: one job
    at = next(b for b in at.button if b.label == "Launch training").click().run()
    job = next(j for j in api.jobs(tmp_path) if j["spec"]["model"] == "bpr")
    assert job["spec"]["epochs"] == quick["epochs"] and job["spec"]["settings"] == {"patience": quick["patience"]}
    api.cancel_job(job["id"], tmp_path)


def test_the_explain_page_takes_a_typed_user_id_that_is_not_listed(trained_workspace, monkeypatch):
    ws, runs = trained_workspace
    monkeypatch.setenv("CROSSLENS_WORKSPACE", str(ws))
    at = open_page("explain")
    picker = at.selectbox[1]  # lists the warm test users
    cold = next(u for u in api.test_users(runs["lmkg"]["id"], "cold", ws) if u not in picker.options)

    def typed(user: str) -> AppTest:
        """What the browser sends for a typed value: its text as the widget's string value."""
        picker = at.selectbox[1]
        picker.options.append(user)  # AppTest sets a selectbox by option; the browser sends the typed text
        return picker.set_value(user).run()

    at = typed(cold)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("test case (cold)" in c.value for c in at.caption)  # scored as that user
    at = typed("nobody-by-this-id")
    assert any("nobody-by-this-id" in e.value for e in at.error) and not at.exception
