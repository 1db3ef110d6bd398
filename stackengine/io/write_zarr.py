"""zarr output, a sink: a resumable partial store written tile by tile.

The store is built beside the target as ``.NAME.partial``: xarray writes the
metadata (and the small per-frame variables) first (:func:`create_partial`),
then each output tile's chunk of every variable is written, last a marker
file in ``.NAME.partial/_tiles_done/`` (:func:`write_tile`). A finished run
consolidates the metadata, removes the markers and renames the store to
``NAME`` (:func:`finish_partial`), so the target only ever appears complete.

The partial store records the fingerprint of the job that made it and a
description of that job (:func:`partial_job`), so that a run asked to resume
it can refuse a store made by another job and say what differs. Computing the
tiles is :mod:`stackengine.tasks.write`'s work; nothing here runs a graph.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import xarray as xr

from .atomic import commit, remove_path

__all__ = [
    "MARKERS",
    "create_partial",
    "done_tiles",
    "finish_partial",
    "partial_job",
    "partial_path",
    "tile_marker",
    "write_tile",
]

MARKERS = "_tiles_done"
FINGERPRINT = "stackengine_partial"
DESCRIPTION = "stackengine_partial_job"


def partial_path(path: Path) -> Path:
    """The resumable partial store of ``path``."""
    return path.with_name(f".{path.name}.partial")


def create_partial(
    ds: xr.Dataset,
    partial: Path,
    encoding: dict[str, dict[str, Any]],
    fingerprint: str,
    description: dict[str, Any],
) -> None:
    """Write the metadata and the non-tiled variables of ``ds`` into a new ``partial``."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata")
        ds.to_zarr(
            partial, mode="w-", zarr_format=3, consolidated=False, compute=False, encoding=encoding
        )
    attrs = zarr.open_group(str(partial), mode="r+").attrs
    attrs.update({FINGERPRINT: fingerprint, DESCRIPTION: description})
    (partial / MARKERS).mkdir()


def partial_job(partial: Path) -> tuple[str | None, dict[str, Any]]:
    """The fingerprint and job description recorded in ``partial``."""
    import zarr

    try:
        attrs = zarr.open_group(str(partial), mode="r").attrs.asdict()
    except Exception:  # not a readable store: it matches no job
        return None, {}
    return attrs.get(FINGERPRINT), attrs.get(DESCRIPTION) or {}


def tile_marker(partial: Path, tile: tuple[int, ...]) -> str:
    """The marker file of a finished tile."""
    return str(partial / MARKERS / "_".join(map(str, tile)))


def done_tiles(partial: Path) -> set[str]:
    """Marker names of the tiles already written."""
    return set(os.listdir(partial / MARKERS))


def write_tile(store: str, marker: str, regions: dict, blocks: dict) -> None:
    """Task body: write one tile of every variable, then its marker."""
    import zarr

    for name, value in blocks.items():
        zarr.open_array(store, path=name, mode="r+")[regions[name]] = value
    Path(marker).touch()


def finish_partial(partial: Path, path: Path, overwrite: bool) -> None:
    """Drop the bookkeeping, consolidate the metadata and rename the store into place."""
    import zarr

    group = zarr.open_group(str(partial), mode="r+")
    for key in (FINGERPRINT, DESCRIPTION):
        if key in group.attrs:
            del group.attrs[key]
    remove_path(partial / MARKERS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata")
        zarr.consolidate_metadata(str(partial))
    commit(partial, path, overwrite)
