"""Uploaded files onto disk for the engine's readers: under a sanitised name in a private folder inside the
workspace (api.upload_folder), parsed by engine.data (CSV/TSV/Parquet/RecBole atomic), never unpickled."""
from __future__ import annotations

import re
from pathlib import Path


def safe_name(name: str, fallback: str) -> str:
    """The uploaded name reduced to a plain file name: no folders, no leading dots, only [A-Za-z0-9._-]."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name).lstrip("._")[:100]
    return name if "." in name else fallback


def save(upload, folder: Path, fallback: str, stem: str | None = None) -> Path:
    """Write one uploaded file into `folder`; `stem` renames it (a RecBole .link must sit beside its .kg)."""
    name = safe_name(upload.name, fallback)
    if stem:
        name = f"{stem}{Path(name).suffix}"
    path = folder / name
    path.write_bytes(upload.getvalue())
    return path
