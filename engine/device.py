"""Where models and the text encoder run: $CROSSLENS_DEVICE when set (`--device` of `speed`), else the GPU when there
is one, else the CPU; how many CPU threads a process may use."""
import os

DEVICES = ("cpu", "cuda")
DEVICE_VARIABLE = "CROSSLENS_DEVICE"


def default_device() -> str:
    import torch  # here, not at the top: importing engine.text must not load torch
    return os.environ.get(DEVICE_VARIABLE) or ("cuda" if torch.cuda.is_available() else "cpu")


def use_device(name: str) -> None:
    """Run this process's models and encoder on `name` (cpu or cuda), refused with a readable error when this
    machine cannot (no CUDA GPU visible to torch)."""
    import torch
    from .errors import CrossLensError
    if name not in DEVICES:
        raise CrossLensError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrossLensError(f"--device cuda: torch sees no CUDA GPU on this machine (torch {torch.__version__}, "
                             f"built for CUDA {torch.version.cuda or 'none: a CPU-only build'}). Run on a machine "
                             f"with an NVIDIA GPU and a CUDA build of torch, or use --device cpu.")
    os.environ[DEVICE_VARIABLE] = name


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
