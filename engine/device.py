"""Where models and the text encoder run: the GPU when there is one, else the CPU; how many CPU threads a process
may use."""
import os


def default_device() -> str:
    import torch  # here, not at the top: importing engine.text must not load torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """Threads one process may use: $OMP_NUM_THREADS (a background job's share of the cores, set by engine.jobs),
    else every core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else cpu_cores()
