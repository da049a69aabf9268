"""CVACT (Liu & Li, CVPR 2019): splits 'val' (CVACT_val) and 'test' (CVACT_test).

``ACT_data.mat`` lists every panorama id (``panoIds``) with its UTM position (``utm``,
metres) and 1-based row indices of each set: ``trainSet.trainInd`` (training, images in
``ANU_data_small/``), ``valSet.valInd`` (CVACT_val, ``ANU_data_small/``) and
``valSetAll.valInd`` (CVACT_test, ``ANU_data_test/``). Indices are read by field name,
never by position. Ground and aerial positions are the UTM metres of the pair, so the
metre-level metrics and the 25 m positive radius apply. Panoramas are 2:1
equirectangular; the harness keeps their middle half of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.io

from benchmark.data.base import DatasetBundle, SourceGeometry
from benchmark.data.files import inside, refuse_special
from benchmark.data.images import LoadOptions
from benchmark.data.layouts import Inventory, Listing, bundle_from, layout_error, with_polarmaps
from benchmark.errors import BenchmarkError
from benchmark.specs import DatasetSpec

MAT = "ACT_data.mat"
SMALL, TEST = "ANU_data_small", "ANU_data_test"
OFFICIAL = {
    "val": {"train pairs": 35_532, "test pairs": 8_884},
    "test": {"train pairs": 35_532, "test pairs": 92_802},
}
# split -> side -> (struct, field, image folder)
SETS = {
    "val": {"train": ("trainSet", "trainInd", SMALL), "test": ("valSet", "valInd", SMALL)},
    "test": {"train": ("trainSet", "trainInd", SMALL), "test": ("valSetAll", "valInd", TEST)},
}
GEOMETRY = SourceGeometry(ground_rows=(0.25, 0.75))


@dataclass
class ActData:
    """The content of ACT_data.mat: ids, UTM metres and 0-based index sets by name."""

    path: Path
    pano_ids: list[str]
    utm: np.ndarray
    raw: dict

    def indices(self, struct: str, name: str) -> np.ndarray:
        """The 0-based rows of STRUCT.NAME (stored 1-based), validated."""
        if struct not in self.raw:
            raise BenchmarkError(
                f"{self.path} has no '{struct}' (it has {', '.join(sorted(self.keys()))}); "
                "this split needs it. Use the ACT_data.mat of the CVACT download."
            )
        s = self.raw[struct]
        names = s.dtype.names or ()
        if name not in names:
            raise BenchmarkError(
                f"{self.path}: '{struct}' has no field '{name}' (fields: {', '.join(names)}). "
                "Use the ACT_data.mat of the CVACT download."
            )
        values = np.asarray(s[name][0, 0]).ravel()
        if values.size and not np.all(np.equal(np.mod(values, 1), 0)):
            raise BenchmarkError(f"{self.path}: {struct}.{name} holds non-integer indices.")
        idx = values.astype(np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > len(self.pano_ids)):
            raise BenchmarkError(
                f"{self.path}: {struct}.{name} should hold 1-based rows in 1..{len(self.pano_ids)}"
                f", found {idx.min()}..{idx.max()}. Use the ACT_data.mat of the CVACT download."
            )
        return idx - 1

    def keys(self) -> list[str]:
        """The variables in the file (MATLAB header entries excluded)."""
        return [k for k in self.raw if not k.startswith("__")]


def _strings(arr: np.ndarray) -> list[str]:
    arr = np.asarray(arr)
    if arr.dtype.kind == "U":
        return [str(s).strip() for s in arr.ravel()]
    return [str(np.asarray(x).ravel()[0]).strip() for x in arr.ravel()]  # a cell array


def read_mat(path: Path) -> ActData:
    """Load ACT_data.mat; a damaged or foreign file is a clear BenchmarkError."""
    try:
        raw = scipy.io.loadmat(path)
    except NotImplementedError:
        raise BenchmarkError(
            f"{path} is a MATLAB v7.3 (HDF5) file; re-save it in MATLAB with "
            "save('ACT_data.mat', '-v7') or use the file of the CVACT download."
        ) from None
    except Exception as exc:  # scipy raises many types on a damaged file
        raise BenchmarkError(
            f"{path} could not be read as a MATLAB file ({exc}). It is damaged or incomplete: "
            "copy ACT_data.mat again from the CVACT download."
        ) from None
    for key in ("panoIds", "utm"):
        if key not in raw:
            have = ", ".join(k for k in raw if not k.startswith("__"))
            raise BenchmarkError(
                f"{path} has no '{key}' (it has {have}). Use the ACT_data.mat of the CVACT "
                "download."
            )
    ids = _strings(raw["panoIds"])
    utm = np.asarray(raw["utm"], dtype=np.float64).reshape(-1, 2)
    if len(utm) != len(ids):
        raise BenchmarkError(f"{path}: {len(ids)} panoIds but {len(utm)} utm rows.")
    return ActData(Path(path), ids, utm, raw)


def locate(root: Path | None) -> tuple[Path, Path, Path]:
    """(ACT_data.mat, ANU_data_small, ANU_data_test) for ROOT, or a layout error.

    ROOT may be the CVACT folder or ANU_data_small itself (ANU_data_test is then its
    sibling); the .mat may be at ROOT or in ANU_data_small.
    """
    if root is None:
        raise BenchmarkError("Dataset cvact needs --data-root pointing at your CVACT folder.")
    root = Path(root).expanduser()
    small = root / SMALL if (root / SMALL).is_dir() else root
    test = small.parent / TEST
    mats = [p for p in (root / MAT, small / MAT) if p.is_file()]
    missing = [] if mats else [f"{MAT} (at the root or in {SMALL}/)"]
    for sub in ("streetview", "satview_polish"):
        if not (small / sub).is_dir():
            missing.append(f"{SMALL}/{sub}/")
    if missing:
        raise layout_error("cvact", root, missing)
    return mats[0], small, test


def polarmap_dir(root: Path, images: Path) -> Path:
    """Where SAFA's data preparation put polar aerials: beside the images, else at ROOT."""
    inside = images / "polarmap"
    return inside if inside.is_dir() else root / "polarmap"


def polar_pairs(inv: Inventory, k: int) -> list[tuple[Path, Path]]:
    """Up to K (tile, prepared polar image) pairs of the test side whose polar file exists."""
    side = inv.sides["test"]
    if not side.aerial:
        return []
    folder = polarmap_dir(inv.root, Path(side.aerial[0]).parent.parent)
    pairs = [
        (Path(a), folder / f"{pano}_satView_polish.png")
        for a, pano in zip(side.aerial[: 4 * k], side.meta["ids"], strict=False)
    ]
    return [(a, p) for a, p in pairs if a.is_file() and p.is_file()][:k]


def listing(data: ActData, struct: str, field: str, images: Path, side: str) -> Listing:
    """The pairs of STRUCT.FIELD with their images in IMAGES and their UTM positions."""
    idx = data.indices(struct, field)
    ids = [data.pano_ids[i] for i in idx]
    xy = data.utm[idx]

    def where(k: int) -> str:
        return f"{data.path} (panoIds entry {idx[k] + 1}, in {struct}.{field})"

    ground = [
        inside(images / "streetview", f"{p}_grdView.jpg", where(k)) for k, p in enumerate(ids)
    ]
    aerial = [
        inside(images / "satview_polish", f"{p}_satView_polish.jpg", where(k))
        for k, p in enumerate(ids)
    ]
    for paths in (ground, aerial):
        refuse_special(paths, where)
    return Listing(
        name=side,
        ground=ground,
        aerial=aerial,
        positives=np.arange(len(ids)),
        ground_xy=xy,
        aerial_xy=xy.copy(),
        meta={"ids": ids, "index_set": f"{struct}.{field}", "xy": "UTM (utm[:,0], utm[:,1]) m"},
    )


def inventory(root: Path | None, split: str) -> Inventory:
    """What a CVACT folder holds for SPLIT ('val' or 'test')."""
    mat, small, test = locate(root)
    base = Path(root).expanduser()
    if split not in SETS:
        raise BenchmarkError(f"CVACT has splits 'val' and 'test', not {split!r}.")
    if split == "test" and not test.is_dir():
        raise layout_error("cvact", base, [f"{TEST}/ (the CVACT_test images)"])
    data = read_mat(mat)
    found = [
        f"{mat} with {len(data.pano_ids):,} panoIds and UTM positions",
        f"CVACT_val images in {small}",
    ]
    if test.is_dir():
        found.append(f"CVACT_test images in {test}")
    if any(polarmap_dir(base, f).is_dir() for f in (small, test)):
        found.append(
            "prepared polar aerials in polarmap/ (the harness polar-transforms the "
            "original tiles itself; `datasets check` compares a sample)"
        )
    folders = {SMALL: small, TEST: test}
    sides = {
        side: listing(data, struct, field, folders[folder], side)
        for side, (struct, field, folder) in SETS[split].items()
    }
    return Inventory("cvact", split, base, found, sides, dict(OFFICIAL[split]))


def build_cvact(root: Path | None, split: str, options: dict | None = None) -> DatasetBundle:
    """CVACT_val ('val') or CVACT_test ('test'), with UTM positions in metres."""
    opts = LoadOptions(**(options or {}))
    inv = inventory(root, split)
    if opts.polarmap:

        def polar(a: str) -> str:
            return str(polarmap_dir(inv.root, Path(a).parent.parent) / f"{Path(a).stem}.png")

        inv = with_polarmaps(inv, polar)
    return bundle_from(inv, opts, replace(GEOMETRY, aerial_polar=opts.polarmap))


SPEC = DatasetSpec(
    name="cvact",
    splits=("val", "test"),
    default_split="val",
    build=build_cvact,
    description="CVACT_val (35,532 / 8,884) and CVACT_test (92,802), UTM metres; 1200 px aerial",
)
