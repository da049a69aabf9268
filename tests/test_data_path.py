"""The data path: uint8 batches from workers, batched device transforms pinned to per-image
references, reduced-size JPEG decoding, the model-input cache and the loader settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import ValidationError

from benchmark.cli import parser
from benchmark.config import RunConfig, resolve
from benchmark.data import loader
from benchmark.data.base import SourceGeometry
from benchmark.data.cvusa import build_cvusa
from benchmark.data.images import ImageReader, LoadOptions, decode_image, read_image
from benchmark.data.loader import (
    EpochShuffle,
    EpochTagged,
    PairDataset,
    ViewDataset,
    WaitClock,
    make_loader,
    resolve_workers,
)
from benchmark.data.transforms import GroundProtocol, InputPipeline
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from benchmark.runner import run_job
from benchmark.specs import Preprocess
from tests.fixtures_datasets import coded_image, save, write_cvusa
from tests.test_polar import direct_polar

CPU = torch.device("cpu")
# Batched and per-image float32 sums of at most a few dozen products of values <= 255 differ
# by a few ulp(255) ~ 3e-5 levels; after /255 and /std (>= 0.2) that is < 1e-6. 1e-5 leaves room
# for other CPUs' vector widths and summation orders.
ATOL = 1e-5


@pytest.fixture(scope="module")
def cvusa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("CVUSA")
    write_cvusa(root, n_train=6, n_test=5, ground=(40, 160), aerial=96)
    return root


def normalise(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
    x = (x / 255.0 - mean) / std
    return x.flip(0) if pre.bgr else x


def reference_ground(image: np.ndarray, pre: Preprocess, rows: tuple[float, float]) -> torch.Tensor:
    """One panorama the per-image way: numpy row crop, the stated resize, normalisation."""
    h = image.shape[0]
    kept = image[round(rows[0] * h) : round(rows[1] * h)]
    x = torch.from_numpy(kept.copy()).permute(2, 0, 1).float()[None]
    x = F.interpolate(x, pre.ground_size, mode="bilinear", antialias=True, align_corners=False)
    return normalise(x[0], pre)


def reference_aerial(image: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """One aerial tile the per-image way: SAFA's formula pixel by pixel, or the stated resize."""
    if pre.polar:
        x = torch.from_numpy(direct_polar(image, *pre.aerial_size)).permute(2, 0, 1).float()
    else:
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float()[None]
        x = F.interpolate(x, pre.aerial_size, mode="bilinear", antialias=True)[0]
    return normalise(x, pre)


@pytest.mark.parametrize("polar", [True, False])
@pytest.mark.parametrize("rows", [(0.0, 1.0), (0.25, 0.75)])
def test_batched_inputs_match_the_per_image_reference(
    polar: bool, rows: tuple[float, float]
) -> None:
    rng = np.random.default_rng(0)
    pre = Preprocess((8, 32), (8, 32) if polar else (12, 12), polar=polar, bgr=not polar)
    pipeline = InputPipeline(pre, SourceGeometry(ground_rows=rows))
    grounds = rng.integers(0, 256, (3, 24, 90, 3), dtype=np.uint8)
    aerials = rng.integers(0, 256, (3, 30, 30, 3), dtype=np.uint8)
    g = pipeline.model_input("ground", torch.from_numpy(grounds))
    a = pipeline.model_input("aerial", torch.from_numpy(aerials))
    assert g.is_contiguous() and a.is_contiguous()  # NCHW: kernels' rounding follows layout
    # polar: float32 gather vs float64 loop, 4 products of <= 255 -> < 1e-4 levels
    polar_atol = 1e-3 / 255 / min(pre.std) if polar else ATOL
    for k in range(3):
        torch.testing.assert_close(g[k], reference_ground(grounds[k], pre, rows), atol=ATOL, rtol=0)
        torch.testing.assert_close(a[k], reference_aerial(aerials[k], pre), atol=polar_atol, rtol=0)
    mixed = [torch.from_numpy(aerials[0, :20, :20].copy()), torch.from_numpy(aerials[1])]
    together = pipeline.model_input("aerial", mixed)  # sizes differ: one image at a time
    torch.testing.assert_close(together[0], pipeline.aerial(mixed[0].numpy()))
    torch.testing.assert_close(together[1], a[1])


def test_protocol_then_shaping_equals_shaping_a_shifted_image() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 16, 64, 3), dtype=np.uint8)
    pre = Preprocess((8, 32), (8, 32), polar=True)
    pipeline = InputPipeline(pre, SourceGeometry())
    protocol = GroundProtocol("unknown-orientation", seed=2)
    seen = protocol.present(torch.from_numpy(images), [0, 1, 2, 3])
    batch = pipeline.model_input("ground", seen)
    for k in range(4):
        start = round(protocol.azimuth(k) / 360 * 64) % 64
        by_hand = reference_ground(np.roll(images[k], -start, axis=1), pre, (0.0, 1.0))
        torch.testing.assert_close(batch[k], by_hand, atol=ATOL, rtol=0)


def test_pair_batches_from_workers_match_the_main_process(cvusa: Path) -> None:
    bundle = build_cvusa(cvusa, "test")
    pipeline = InputPipeline(Preprocess((16, 64), (16, 64), polar=True), bundle.geometry)
    pairs = PairDataset(bundle.train, pipeline)
    sampler = EpochShuffle(len(pairs), seed=0)
    batches = EpochTagged(torch.utils.data.BatchSampler(sampler, 3, drop_last=True), sampler)
    loaded = list(make_loader(pairs, 3, 2, CPU, batch_sampler=batches))
    assert len(loaded) == 2
    for batch, keys in zip(loaded, batches, strict=True):
        here = pairs.__getitems__(keys)
        # 40x160 JPEGs for a 16x64 input: decoded at half size
        assert batch["ground"].dtype == torch.uint8 and batch["ground"].shape == (3, 20, 80, 3)
        for key in ("ground", "aerial", "index", "aerial_index"):
            assert torch.equal(batch[key], here[key])
        inputs = pairs.to_model(batch, CPU)
        assert inputs["ground"].shape == inputs["aerial"].shape == (3, 3, 16, 64)
        first = int(batch["index"][0])
        expected = pipeline.ground(pairs.ground.read(first))
        torch.testing.assert_close(inputs["ground"][0], expected, atol=ATOL, rtol=0)


def test_jpegs_decode_at_the_smallest_dct_scale_that_covers_the_input(tmp_path: Path) -> None:
    save(tmp_path / "a.jpg", coded_image(240, 240, 3))
    save(tmp_path / "a.png", coded_image(240, 240, 3))
    reader = ImageReader([tmp_path / "a.jpg", tmp_path / "a.png"], "aerial", LoadOptions())
    full = reader(0)
    assert full.shape == (240, 240, 3)
    assert reader.at_least((100, 100))(0).shape == (120, 120, 3)  # 240 // 100 = 2 -> 1/2
    assert reader.at_least((30, 30))(0).shape == (30, 30, 3)  # 240 // 30 = 8 -> 1/8
    assert reader.at_least((30, 31))(0).shape == (60, 60, 3)  # 240 // 31 = 7 -> 1/4
    assert reader.at_least((30, 30))(1).shape == (240, 240, 3)  # PNG: full size
    exact = ImageReader(reader.paths, "aerial", LoadOptions(decode="full"))
    assert exact.at_least((30, 30))(0).shape == (240, 240, 3)
    # the reduced decode then the stated resize stays close to full decode + resize
    pre = Preprocess((32, 128), (48, 48), polar=False)
    pipeline = InputPipeline(pre, SourceGeometry())
    small = torch.tensor(reader.at_least(pipeline.source_size("aerial"))(0))[None]
    assert small.shape[1] == 60
    difference = pipeline.shape("aerial", small) - pipeline.shape(
        "aerial", torch.tensor(full)[None]
    )
    assert difference.abs().mean() < 2.0  # grey levels; the DCT scaling filters a little more


@pytest.mark.parametrize(
    "mode,options",
    [
        ("RGB", {}),  # 4:2:0
        ("RGB", {"subsampling": 0}),  # 4:4:4
        ("RGB", {"subsampling": 1}),  # 4:2:2
        ("RGB", {"progressive": True}),
        ("L", {}),
        ("CMYK", {}),
    ],
)
def test_full_size_jpegs_decode_to_the_same_pixels_as_pil(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, options: dict
) -> None:
    """Both use libjpeg-turbo's exact integer IDCT: the direct path, which the record
    names, changes no pixel."""
    path = tmp_path / "a.jpg"
    Image.fromarray(coded_image(97, 130, 5)).convert(mode).save(path, quality=90, **options)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    monkeypatch.setattr("benchmark.data.images.Image.open", None)  # PIL is not used
    decoded = decode_image(path)
    np.testing.assert_array_equal(decoded, expected)
    assert not decoded.flags.writeable and read_image(path).flags.writeable


def test_a_truncated_jpeg_at_full_size_names_the_file(tmp_path: Path) -> None:
    path, good = tmp_path / "cut.jpg", tmp_path / "good.jpg"
    save(good, coded_image(64, 64, 1))
    path.write_bytes(good.read_bytes()[:300])
    with pytest.raises(BenchmarkError, match=f"Image {path} could not be decoded"):
        decode_image(path)
    reader = ImageReader([path, good], "aerial", LoadOptions(skip_bad_images=True))
    with pytest.warns(UserWarning, match="black aerial image"):
        assert not reader(0).any() and reader(0).shape == (64, 64, 3)


def test_a_limited_split_keeps_reduced_decoding_and_caching(cvusa: Path) -> None:
    bundle = build_cvusa(cvusa, "test", {"cache": "model-input", "cache_dir": "/unused"})
    limited = bundle.test.subset(3)
    assert isinstance(limited.load_aerial, ImageReader)
    assert limited.load_aerial.paths == bundle.test.load_aerial.paths[:3]
    assert limited.load_aerial.options.cache == "model-input"


def test_source_sizes_leave_every_step_a_reduction() -> None:
    pre = Preprocess((128, 512), (128, 512), polar=True)
    cvact = InputPipeline(pre, SourceGeometry(ground_rows=(0.25, 0.75)))
    assert cvact.source_size("ground") == (256, 512)  # the middle half is cut after decoding
    assert cvact.source_size("aerial") is None  # point-sampled: any prefilter changes it
    resized = InputPipeline(Preprocess((320, 640), (320, 320), polar=False), SourceGeometry())
    assert resized.source_size("aerial") == (320, 320)


def test_model_input_cache_is_built_once_and_holds_the_shaped_images(
    cvusa: Path, tmp_path: Path
) -> None:
    options = {"cache": "model-input", "cache_dir": str(tmp_path)}
    cached, direct = build_cvusa(cvusa, "test", options), build_cvusa(cvusa, "test")
    pre = Preprocess((16, 64), (16, 64), polar=True)
    pipeline = InputPipeline(pre, cached.geometry)
    fast = ViewDataset(cached.test, "aerial", pipeline)
    slow = ViewDataset(direct.test, "aerial", pipeline)
    assert (fast.source.stage, slow.source.stage) == ("model-input", "pixels")
    indices = [4, 0, 2]
    from_cache = fast.to_model(fast.__getitems__(indices), CPU)
    from_files = slow.to_model(slow.__getitems__(indices), CPU)
    # the cache holds the same shaped pixels rounded to uint8: at most half a grey level apart
    assert (from_cache - from_files).abs().max() <= 0.5 / 255 / min(pre.std) + ATOL
    files = sorted(tmp_path.glob("*.npy"))
    assert len(files) == 1 and fast.source.record["cache"].startswith("model-input")
    stamp = files[0].stat().st_mtime_ns
    ViewDataset(cached.test, "aerial", pipeline)  # found again, not rebuilt
    assert files[0].stat().st_mtime_ns == stamp and len(list(tmp_path.glob("*.npy"))) == 1
    other = InputPipeline(Preprocess((16, 64), (16, 64), polar=False), cached.geometry)
    ViewDataset(cached.test, "aerial", other)  # resized, not polar: another file
    assert len(list(tmp_path.glob("*.npy"))) == 2
    tile = Path(cached.test.load_aerial.paths[0])
    os.utime(tile, ns=(stamp, stamp + 10**9))  # a changed file is a changed cache
    ViewDataset(cached.test, "aerial", pipeline)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    full = build_cvusa(cvusa, "test", {**options, "decode": "full"})
    for rows in ((0.0, 1.0), (0.25, 0.75)):  # only the kept rows differ: two files
        ViewDataset(full.test, "ground", InputPipeline(pre, SourceGeometry(ground_rows=rows)))
    assert len(list(tmp_path.glob("*.npy"))) == 5


def test_protocols_apply_to_cached_panoramas_at_model_resolution(
    cvusa: Path, tmp_path: Path
) -> None:
    bundle = build_cvusa(cvusa, "test", {"cache": "model-input", "cache_dir": str(tmp_path)})
    pre = Preprocess((16, 64), (16, 64), polar=True)
    pipeline = InputPipeline(pre, bundle.geometry)
    protocol = GroundProtocol("fov=90", seed=1, fill=(124, 116, 104))
    views = ViewDataset(bundle.test, "ground", pipeline, protocol)
    aligned = ViewDataset(bundle.test, "ground", pipeline)
    batch = views.to_model(views.__getitems__([1, 3]), CPU)
    plain = aligned.to_model(aligned.__getitems__([1, 3]), CPU)
    fill = normalise(torch.tensor([124.0, 116, 104]).view(3, 1, 1), pre)
    for k, index in enumerate([1, 3]):
        start = round(protocol.azimuth(index) / 360 * 64) % 64
        torch.testing.assert_close(
            batch[k, :, :, :16], plain[k][:, :, (start + np.arange(16)) % 64]
        )
        torch.testing.assert_close(batch[k, :, :, 16:], fill.expand(3, 16, 48))


def test_device_decode_reads_jpeg_bytes_and_decodes_them_on_the_device(cvusa: Path) -> None:
    on_device = build_cvusa(cvusa, "test", {"decode": "device"})
    on_host = build_cvusa(cvusa, "test", {"decode": "full"})
    pipeline = InputPipeline(Preprocess((16, 64), (16, 64), polar=True), on_device.geometry)
    for view in ("ground", "aerial"):
        fast, slow = (
            ViewDataset(on_device.test, view, pipeline),
            ViewDataset(on_host.test, view, pipeline),
        )
        batch = fast.__getitems__([0, 1])
        assert fast.source.stage == "jpeg" and batch["image"][0].dim() == 1  # bytes
        # on CUDA, nvJPEG may round the colour conversion differently from libjpeg-turbo
        difference = fast.to_model(batch, CPU) - slow.to_model(slow.__getitems__([0, 1]), CPU)
        assert difference.abs().mean() < 2 / 255 / 0.225


def test_options_say_what_is_cached_and_refuse_what_cannot_work() -> None:
    assert LoadOptions(cache_dir="/tmp/x").cache == "decoded"  # a folder alone, as before
    assert LoadOptions().cache == "none" and LoadOptions().decode == "reduced"
    with pytest.raises(ValidationError, match="decode=device"):
        LoadOptions(decode="device", cache="model-input")
    with pytest.raises(ValidationError, match="cache"):
        LoadOptions(cache="everything")


def test_workers_auto_follows_the_cores_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_workers("auto", torch.device("cuda")) == 15
    assert resolve_workers("auto", CPU) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four torchrun processes share the cores
    assert resolve_workers("auto", torch.device("cuda")) == 3
    assert resolve_workers("auto", CPU) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert resolve_workers("auto", CPU) == 0 and resolve_workers(3, CPU) == 3
    assert RunConfig(plugin="safa", workers="auto").workers == "auto"
    with pytest.raises(ValidationError):
        RunConfig(plugin="safa", workers="many")
    args = parser().parse_args(["run", "--plugins", "safa", "--workers", "auto"])
    assert args.workers == "auto"
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["run", "--plugins", "safa", "--workers", "two"])
    assert exc.value.code == 2


def test_wait_clock_counts_the_time_spent_waiting_for_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(loader.time, "perf_counter", lambda: now[0])

    def slow_items():  # each item takes 2 s to arrive
        for item in range(3):
            now[0] += 2.0
            yield item

    clock = WaitClock(slow_items())
    for _ in clock:
        now[0] += 5.0  # the loop body's work is not waiting
    assert clock.seconds == 6.0


def test_a_run_from_the_model_input_cache_records_its_data_path(
    cvusa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = build_registry()
    user = {
        "dataset": "cvusa",
        "data_root": cvusa,
        "dataset_options": {"cache": "model-input", "cache_dir": str(tmp_path / "cache")},
        "epochs": 1,
        "batch_size": 3,
        "workers": 1,
        "protocol": "fov=90",
        "results_dir": tmp_path / "results",
        "device": "cpu",
        "model": {"ground_size": [16, 64], "aerial_size": [16, 64]},
        "profile": False,
    }
    result = run_job(reg, resolve(reg.model("safa"), user, quick=True))
    assert result.status == "ok", result.error
    sources = result.preprocessing["sources"]
    assert sources["ground"]["cache"].startswith("model-input")
    assert sources["ground"]["protocol_applied_to"].startswith("cached model inputs")
    assert sources["ground"]["decoded_at_least"] == [16, 64]
    assert "decoded_at_least" not in sources["aerial"]  # polar tiles decode at full size
    training = result.training
    assert training["workers"] == 1 and training["compute_seconds"] > 0
    assert 0 <= training["data_wait_seconds"] < result.train_seconds
    assert "data: waited" in capsys.readouterr().out
    # train, validation (selection=best holds out 5%) and test, ground and aerial each
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 6
