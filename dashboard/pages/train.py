"""Train: choose the scenario and the model, launch a background training job, watch every job live."""
import streamlit as st

from dashboard import job_card, layout
from engine import api

ws = layout.workspace()
layout.header("Train", "Training runs as a separate process (a job in the workspace registry): it goes on when "
                       "you leave this page, reload it or restart the server.")

MODELS = layout.MODELS
HIDDEN = ("seed", "epochs")  # set by their own widgets

names = []
with layout.readable_errors("Reading the datasets"):
    names = [d["name"] for d in layout.datasets(ws)]
if len(names) < 2:
    st.info("A cross-domain scenario needs at least two domains; upload them on the **Datasets** page.")
else:
    with st.container(border=True):
        left, right = st.columns(2)
        target = left.selectbox("Target domain (recommend here)", names, index=min(1, len(names) - 1))
        sources = right.multiselect("Source domain(s) (learn from here)", [n for n in names if n != target],
                                    default=[n for n in names if n != target][:1])
        left, mid, right = st.columns([2, 1, 1])
        model = left.selectbox("Model", list(MODELS), index=list(MODELS).index("lmkg"),
                               format_func=lambda m: f"{m} — {MODELS[m]['description']}")
        seed = mid.number_input("Seed (split and initialisation)", 0, 10_000, 0, step=1)
        cold = right.slider("Cold-start fraction", 0.0, 0.5, 0.2, 0.05,
                            help="share of the users in both domains whose target history is held out entirely")
        defaults, hints = MODELS[model]["defaults"], MODELS[model]["help"]
        epochs = None
        if "epochs" in defaults:
            epochs = st.number_input("Epochs (at most; training stops early when validation stops improving)", 1,
                                     500, int(defaults["epochs"]), key=f"epochs-{model}", help=hints["epochs"])
        settings = {}
        shown = {k: v for k, v in defaults.items() if k not in HIDDEN}
        if shown:
            with st.expander(f"{model} settings"):
                cols = st.columns(4)
                for n, (key, default) in enumerate(shown.items()):
                    col, wkey = cols[n % 4], f"{model}-{key}"
                    if default is None:  # chosen on validation unless given
                        value = col.number_input(key, value=None, format="%g", placeholder="chosen on validation",
                                                 key=wkey, help=hints[key])
                    elif isinstance(default, bool):
                        value = col.checkbox(key, default, key=wkey, help=hints[key])
                    elif isinstance(default, int):
                        value = col.number_input(key, value=default, step=1, key=wkey, help=hints[key])
                    elif isinstance(default, float):
                        value = col.number_input(key, value=default, format="%g", key=wkey, help=hints[key])
                    else:
                        value = col.text_input(key, str(default), key=wkey, help=hints[key])
                    if value != default:
                        settings[key] = value
        if st.button("Launch training", type="primary", icon=":material/play_arrow:", disabled=not sources):
            with layout.readable_errors("Launching the job"):
                job = api.start_training(sources, target, model, seed=int(seed), cold_fraction=float(cold),
                                         epochs=int(epochs) if epochs else None, settings=settings, workspace=ws)
                layout.runs.clear()
                st.success(f"Started job `{job['id']}`.")


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
