"""What a real dataset folder holds: expected trees, listings of named files, bundling.

A dataset module reads its split files into an Inventory (one Listing per side: the
ground and aerial files the split names, with labels); ``bundle_from`` drops pairs whose
images are missing (a partial copy works, with a warning and the counts recorded) and
wires the image loaders.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.base import CrossViewSplit, DatasetBundle, SourceGeometry
from benchmark.data.files import Folder, scan
from benchmark.data.images import LoadOptions, image_loader
from benchmark.errors import BenchmarkError

TREES = {
    "cvusa": """\
CVUSA/                                   <- --data-root
  splits/train-19zl.csv                  training pairs (aerial,panorama,annotation)
  splits/val-19zl.csv                    test pairs
  bingmap/19/0000001.jpg ...             750x750 aerial tiles
  streetview/panos/0000001.jpg ...       1232x224 panoramas
  polarmap/19/0000001.png ...            optional, SAFA's prepared polar aerials""",
    "cvact": """\
CVACT/                                   <- --data-root
  ACT_data.mat                           (or ANU_data_small/ACT_data.mat)
  ANU_data_small/                        CVACT_val images (train and val)
    streetview/<panoId>_grdView.jpg
    satview_polish/<panoId>_satView_polish.jpg
  ANU_data_test/                         CVACT_test images (split 'test' only)
    streetview/<panoId>_grdView.jpg
    satview_polish/<panoId>_satView_polish.jpg
  polarmap/<panoId>_satView_polish.png   optional, SAFA's prepared polar aerials""",
    "vigor": """\
VIGOR/                                   <- --data-root
  NewYork/panorama/<panoId>,<lat>,<lon>,.jpg
  NewYork/satellite/satellite_<lat>_<lon>.png
  ... the same for Seattle, SanFrancisco, Chicago
  splits/<City>/satellite_list.txt
  splits/<City>/same_area_balanced_train.txt
  splits/<City>/same_area_balanced_test.txt
  splits/<City>/pano_label_balanced.txt
  splits__corrected/<City>/*__corrected.txt   optional corrected labels
(the re-organised layout ground/<City>/ and satellite/<City>/ is accepted too)""",
}


def layout_error(dataset: str, root: Path, missing: list[str]) -> BenchmarkError:
    """An error naming what is missing under ROOT and showing DATASET's expected tree."""
    if not root.exists():
        problem = f"{root} does not exist."
    else:
        listed = "\n".join(f"  - {m}" for m in missing[:8])
        more = f"\n  ... and {len(missing) - 8} more" if len(missing) > 8 else ""
        problem = f"{root} does not look like a {dataset} folder; missing:\n{listed}{more}"
    return BenchmarkError(
        f"{problem}\nPoint --data-root at the folder you received; it should look like:\n"
        f"{TREES[dataset]}"
    )


@dataclass
class Listing:
    """One side (train or test) as the split files name it: files, labels, positions.

    Per-ground arrays (``positives``, ``semi_positives``, ``ground_xy``, ``offsets`` and
    every array in ``per_ground``) have one row per ground file; ``aerial_xy`` one per
    aerial file. Paths are absolute strings (cheap to build by the hundred thousand).
    """

    name: str
    ground: list[str]
    aerial: list[str]
    positives: np.ndarray
    semi_positives: np.ndarray | None = None
    ground_xy: np.ndarray | None = None
    aerial_xy: np.ndarray | None = None
    offsets: np.ndarray | None = None
    aerial_tile_metres: float | None = None
    per_ground: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def absent(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks of the ground and aerial files that do not exist."""
        return _absent(self.ground), _absent(self.aerial)

    def labelled(self) -> np.ndarray:
        """(n, k) aerial indices each ground image needs: positive then semi-positives."""
        cols = [self.positives[:, None]]
        if self.semi_positives is not None:
            cols.append(self.semi_positives)
        return np.concatenate(cols, axis=1)

    def present(self) -> tuple[Listing, dict[str, Any]]:
        """This listing without missing files (and pairs needing them), and what was dropped."""
        g_absent, a_absent = self.absent()
        keep_g = ~g_absent & ~a_absent[self.labelled()].any(axis=1)
        keep_a = ~a_absent
        report = {
            "listed_ground": len(self.ground),
            "listed_aerial": len(self.aerial),
            "missing_ground": int(g_absent.sum()),
            "missing_aerial": int(a_absent.sum()),
            "dropped_pairs": int((~keep_g).sum()),
            "missing_examples": _first(self.ground, g_absent) + _first(self.aerial, a_absent),
        }
        if keep_g.all() and keep_a.all():
            return self, report
        remap = np.cumsum(keep_a) - 1
        g_idx = np.flatnonzero(keep_g)

        def rows(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[g_idx]

        semi = None if self.semi_positives is None else remap[self.semi_positives[g_idx]]
        return (
            Listing(
                name=self.name,
                ground=[self.ground[i] for i in g_idx],
                aerial=[p for p, k in zip(self.aerial, keep_a, strict=True) if k],
                positives=remap[self.positives[g_idx]],
                semi_positives=semi,
                ground_xy=rows(self.ground_xy),
                aerial_xy=None if self.aerial_xy is None else self.aerial_xy[keep_a],
                offsets=rows(self.offsets),
                aerial_tile_metres=self.aerial_tile_metres,
                per_ground={k: v[g_idx] for k, v in self.per_ground.items()},
                meta=self.meta,
            ),
            report,
        )


@dataclass
class Inventory:
    """What a dataset folder offers for one split: what was found and each side's listing."""

    dataset: str
    split: str
    root: Path
    found: list[str]
    sides: dict[str, Listing]
    official: dict[str, int]


def _absent(paths: list[str]) -> np.ndarray:
    folders: dict[str, Folder] = {}
    out = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        folder, name = os.path.split(p)
        entries = folders.get(folder)
        if entries is None:
            entries = folders[folder] = scan(folder)
        out[i] = name not in entries.regular and name not in entries.other
    return out


def _first(paths: list[str], mask: np.ndarray, k: int = 3) -> list[str]:
    return [paths[i] for i in np.flatnonzero(mask)[:k]]


def _split(
    listing: Listing, options: LoadOptions, label: str, cache_label: str
) -> tuple[CrossViewSplit, dict]:
    kept, report = listing.present()
    if report["dropped_pairs"] or report["missing_aerial"]:
        warnings.warn(
            f"{label}: {report['missing_ground']} ground and {report['missing_aerial']} aerial "
            f"images named by the split files are missing (e.g. "
            f"{', '.join(report['missing_examples'][:2])}); using the "
            f"{len(kept.ground)} of {len(listing.ground)} pairs that are complete.",
            stacklevel=3,
        )
    if not kept.ground:
        raise BenchmarkError(
            f"{label}: none of the {len(listing.ground)} pairs named by the split files has "
            f"its images (e.g. {', '.join(report['missing_examples'][:2]) or 'none listed'} "
            "missing). Check --data-root; `python -m benchmark datasets check` lists what "
            "is there."
        )
    meta: dict[str, Any] = {**kept.meta, "missing": report}
    meta.update(kept.per_ground)
    split = CrossViewSplit(
        name=listing.name,
        load_ground=image_loader(kept.ground, "ground", options, cache_label),
        load_aerial=image_loader(kept.aerial, "aerial", options, cache_label),
        num_ground=len(kept.ground),
        num_aerial=len(kept.aerial),
        positives=kept.positives,
        semi_positives=kept.semi_positives,
        ground_xy=kept.ground_xy,
        aerial_xy=kept.aerial_xy,
        offsets=kept.offsets,
        aerial_tile_metres=kept.aerial_tile_metres,
        meta=meta,
    )
    return split, report


def with_polarmaps(inventory: Inventory, polar_path: Callable[[str], str]) -> Inventory:
    """INVENTORY with every aerial file replaced by its prepared polar image (POLAR_PATH)."""
    sides = {
        name: replace(side, aerial=[polar_path(a) for a in side.aerial])
        for name, side in inventory.sides.items()
    }
    found = [*inventory.found, "aerials read from prepared polarmap/ (dataset_options.polarmap)"]
    return replace(inventory, sides=sides, found=found)


def bundle_from(
    inventory: Inventory, options: LoadOptions, geometry: SourceGeometry
) -> DatasetBundle:
    """A DatasetBundle from INVENTORY's train and test listings (missing files dropped)."""
    splits, missing = {}, {}
    for side in ("train", "test"):
        label = f"{inventory.dataset}-{inventory.split}-{side}"
        # cache files are named by content, so splits sharing a side share its cache
        splits[side], report = _split(
            inventory.sides[side], options, label, f"{inventory.dataset}-{side}"
        )
        missing[side] = {k: v for k, v in report.items() if k != "missing_examples"}
    return DatasetBundle(
        name=inventory.dataset,
        split=inventory.split,
        train=splits["train"],
        test=splits["test"],
        geometry=geometry,
        info={
            "root": str(inventory.root),
            "found": inventory.found,
            "official_counts": inventory.official,
            "missing": missing,
            "options": options.model_dump(mode="json"),
        },
    )
