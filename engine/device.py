"""Where models and the text encoder run: the GPU when there is one, else the CPU."""


def default_device() -> str:
    import torch  # here, not at the top: importing engine.text must not load torch
    return "cuda" if torch.cuda.is_available() else "cpu"
