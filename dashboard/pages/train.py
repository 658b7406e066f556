"""Train: choose the scenario (the pair sharing the most users first; its shared users and test users shown, a pair
that cannot be evaluated refused) and the model, launch one background job per seed plus the baselines a new
scenario lacks, or a tuning study of the model's settings; watch every job and study live."""
import streamlit as st

from dashboard import job_card, layout, study_card
from engine import api

ws = layout.workspace()
layout.header("Train", "Training runs as a separate process (a job in the workspace registry): it goes on when "
                       "you leave this page, reload it or restart the server.")

MODELS = layout.MODELS
HIDDEN = ("seed", "epochs")  # set by their own widgets
PRESET_KEYS = ("epochs", "patience")  # what presets change: their widgets start again when the preset changes
PRESET_HELP = ("quick: a quarter of the epochs, little patience (a first look); default: the model's settings; "
               "thorough: twice the epochs and patience")

SEEDS_HELP = "one job per seed, e.g. 0,1,2: Compare shows the spread over seeds"


def seeds_of(text: str) -> list[int]:
    seeds = text.replace(",", " ").split()
    if not seeds or not all(s.isdigit() for s in seeds):
        raise ValueError(f"seeds are whole numbers of at least 0, separated by commas, like 0,1,2; got '{text}'.")
    return list(dict.fromkeys(int(s) for s in seeds))


def launch(sources, target, model, seeds, cold, epochs, settings, baselines: bool) -> None:
    """One job per seed, and (with `baselines`) the baseline jobs the scenario lacks; says what was started."""
    started, extra = [], []
    for seed in seeds:
        request = api.TrainRequest(sources, target, model, seed, cold, epochs, settings)
        missing = api.missing_baselines(request, ws) if baselines else []
        started.append(api.start_training(sources, target, model, seed=seed, cold_fraction=cold, epochs=epochs,
                                          settings=settings, workspace=ws)["id"])
        for baseline in missing:
            api.start_training(sources, target, baseline, seed=seed, cold_fraction=cold, workspace=ws)
            extra.append(f"{baseline} (seed {seed})")
    layout.runs.clear()
    st.success(f"Started {len(started)} job(s): {', '.join(f'`{j}`' for j in started)}."
               + (f" Also the baselines this scenario had no run of, so Compare can test against them: "
                  f"{', '.join(extra)}." if extra else ""))


def time_words(guess: dict | None, model: str, jobs: int) -> str:
    """The expected training time on this machine, in words."""
    if guess is None:
        return f"No {model} run has finished on this machine yet, so there is no time estimate; the job shows its ETA."
    at_most = guess["at_most_seconds"]
    text = f"Expected time on this machine: about {api.clock(guess['seconds'])} per job"
    if at_most > 1.1 * guess["seconds"]:
        text += f" (at most {api.clock(at_most)} if every epoch runs)"
    basis = "these domains" if guess["same_domains"] else "other domains, scaled by interactions"
    text += f", from {guess['runs']} earlier {model} run(s) on {basis}"
    return text + (f"; {jobs} jobs run one after another where cores are few." if jobs > 1 else ".")


datasets = []
with layout.readable_errors("Reading the datasets"):
    datasets = layout.datasets(ws)
names = [d["name"] for d in datasets]
if len(names) < 2:
    st.info("A cross-domain scenario needs at least two domains; upload them on the **Datasets** page.")
else:
    versions = tuple(d["version"] for d in datasets)
    shared = layout.shared_users(ws, versions)
    default_target = layout.busiest_target(names, shared)
    with st.container(border=True):
        left, right = st.columns(2)
        target = left.selectbox("Target domain (recommend here)", names, index=names.index(default_target),
                                help="the pair that shares the most users comes first")
        others = [n for n in names if n != target]
        sources = right.multiselect("Source domain(s) (learn from here)", others,
                                    default=[max(others, key=lambda n: shared.loc[target, n])],  # the first of equals
                                    help="the domain that shares the most users with the target comes first")
        left, mid, right = st.columns([2, 1, 1])
        model = left.selectbox("Model", list(MODELS), index=list(MODELS).index("lmkg"),
                               format_func=lambda m: f"{m} — {MODELS[m]['description']}")
        seeds_text = mid.text_input("Seeds (split and initialisation)", "0", help=SEEDS_HELP)
        cold = right.slider("Cold-start fraction", 0.0, 0.5, 0.2, 0.05,
                            help="share of the users in both domains whose target history is held out entirely")
        defaults, hints, presets = MODELS[model]["defaults"], MODELS[model]["help"], MODELS[model]["presets"]
        preset = "default"
        if any(presets.values()):
            preset = st.segmented_control("Preset", list(presets), default="default", key=f"preset-{model}",
                                          help=PRESET_HELP) or "default"
        start = {**defaults, **presets[preset]}  # what the widgets show; a setting differing from defaults is sent
        key = lambda name: f"{model}-{name}" + (f"-{preset}" if name in PRESET_KEYS else "")  # noqa: E731
        epochs = None
        if "epochs" in defaults:
            epochs = st.number_input("Epochs (at most; training stops early when validation stops improving)", 1,
                                     500, int(start["epochs"]), key=key("epochs"), help=hints["epochs"])
        settings = {}
        shown = {k: v for k, v in start.items() if k not in HIDDEN}
        if shown:
            with st.expander(f"{model} settings"):
                cols = st.columns(4)
                for n, (name, value) in enumerate(shown.items()):
                    col, wkey = cols[n % 4], key(name)
                    if value is None:  # chosen on validation unless given
                        value = col.number_input(name, value=None, format="%g", placeholder="chosen on validation",
                                                 key=wkey, help=hints[name])
                    elif isinstance(value, bool):
                        value = col.checkbox(name, value, key=wkey, help=hints[name])
                    elif isinstance(value, int):
                        value = col.number_input(name, value=value, step=1, key=wkey, help=hints[name])
                    elif isinstance(value, float):
                        value = col.number_input(name, value=value, format="%g", key=wkey, help=hints[name])
                    else:
                        value = col.text_input(name, str(value), key=wkey, help=hints[name])
                    if value != defaults[name]:
                        settings[name] = value
        problem = None if sources else "Choose at least one source domain."
        try:
            seeds = seeds_of(seeds_text)
        except ValueError as err:
            seeds, problem = [], str(err)
        with layout.readable_errors("Checking the scenario"):
            if sources and seeds:
                preview = layout.scenario_preview(ws, tuple(sources), target, seeds[0], float(cold), versions)
                cols = st.columns(4)
                cols[0].metric("Shared users", f"{preview['shared_users']:,}", help="users in the target and a source")
                cols[1].metric("Warm test users", f"{preview['warm_test_users']:,}",
                               help="users whose last target item is held out, scored from their history before it")
                cols[2].metric("Cold test users", f"{preview['cold_test_users']:,}",
                               help="shared users whose whole target history is held out, scored from the sources")
                cols[3].metric("Target items ranked", f"{preview['target_items']:,}")
                problem = preview["problem"]
                if not problem:
                    st.caption(time_words(layout.estimate(ws, api.TrainRequest(
                        sources, target, model, seeds[0], float(cold), int(epochs) if epochs else None, settings)),
                        model, len(seeds)))
        if problem:
            st.error(problem)
        baselines = st.checkbox("Also train the baselines this scenario has no run of (pop, itemknn)", True,
                                help="Compare's significance test needs a baseline on the same cases")
        if st.button("Launch training", type="primary", icon=":material/play_arrow:", disabled=bool(problem)):
            with layout.readable_errors("Launching the jobs"):
                launch(sources, target, model, seeds, float(cold), int(epochs) if epochs else None, settings,
                       baselines)

    with st.expander("Tune this model's settings on validation", icon=":material/tune:"):
        st.caption("Optuna (TPE) tries settings one trial after another on this scenario's validation users; the "
                   "first trial is the defaults, a trial falling behind the others' validation curves is stopped "
                   "early, and the test users are scored once, by the best trial's model. Settings changed above "
                   "stay fixed.")
        space = MODELS[model]["search"]
        if not space:
            st.info(f"{model} has no settings that tuning chooses.")
        else:
            st.markdown("Tuned: " + "; ".join(f"**{k}** {words}" for k, words in space.items()
                                              if k not in settings))
            left, mid, right = st.columns(3)
            trials = left.number_input("Trials (at most)", 1, 500, 20, key="tune-trials")
            budget = mid.number_input("Budget (minutes; no trial starts after it)", min_value=1, value=None,
                                      placeholder="none", key="tune-budget")
            segment = right.selectbox("Maximise validation NDCG@10 of", list(api.TUNE_SEGMENTS), key="tune-segment",
                                      format_func=lambda s: f"{s} users")
            if st.button("Start tuning", icon=":material/tune:", disabled=bool(problem), key="tune-start"):
                with layout.readable_errors("Starting the study"):
                    job = api.start_tuning(sources, target, model, int(trials), budget and float(budget), segment,
                                           seeds[0], float(cold), int(epochs) if epochs else None, settings, ws)
                    st.success(f"Started tuning job `{job['id']}`; its trials appear below as they finish.")


@st.fragment(run_every=2)
def jobs():
    with layout.readable_errors("Reading the jobs"):
        all_jobs = api.jobs(ws)[::-1]
        if not all_jobs:
            st.info("No jobs yet.")
            return
        active = [j for j in all_jobs if j["status"] in api.JOB_ACTIVE]
        st.subheader(f"Jobs ({len(active)} running)")
        finished = [j for j in all_jobs if j not in active]
        for job in active + finished[:1]:  # the latest finished job keeps its curves and log on show
            job_card.card(ws, job)
        if len(finished) > 1:
            st.caption("Earlier jobs")
            for job in finished[1:10]:
                job_card.card(ws, job, full=False)


jobs()
study_card.studies(ws)
