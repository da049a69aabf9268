"""Pretrained initialisation: the preflight check, Caffe vgg16.npy weights and their BGR
input, what a result records, and how the weights enter a run's identity."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from benchmark import weights
from benchmark.backbones import VGG16_CFG, conv_names, vgg16_weights, vgg_trunk
from benchmark.config import resolve
from benchmark.data.base import SourceGeometry
from benchmark.data.transforms import InputPipeline
from benchmark.errors import BenchmarkError
from benchmark.jobs import plan
from benchmark.jobs import preflight as preflight_jobs
from benchmark.registry import build_registry
from benchmark.runner import run_job
from benchmark.specs import Preprocess
from plugins.safa import SPEC as SAFA_SPEC
from plugins.safa import SAFAOptions
from tests.fixtures_datasets import write_cvusa

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vgg16_npy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random VGG16 in the Caffe-converted layout the TF1 codes load: np.save of a dict
    layer name -> [W (kh, kw, in, out), b (out,)], float32, classifier layers included."""
    rng = np.random.default_rng(0)
    layers: dict[str, list[np.ndarray]] = {}
    channels = 3
    for name, out in zip(conv_names(VGG16_CFG), [c for c in VGG16_CFG if c != "M"], strict=True):
        fan_in = 9 * channels
        w = rng.standard_normal((3, 3, channels, int(out)), dtype=np.float32) / np.sqrt(fan_in)
        layers[name] = [w, rng.standard_normal(int(out), dtype=np.float32) * 0.1]
        channels = int(out)
    layers["fc8"] = [np.zeros((4, 3), np.float32), np.zeros(3, np.float32)]  # ignored
    path = tmp_path_factory.mktemp("weights") / "vgg16.npy"
    np.save(path, np.array(layers, dtype=object), allow_pickle=True)
    return path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub and an empty cache, whatever this machine has downloaded before."""
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=1.5: False)
    monkeypatch.setattr(weights, "timm_cached", lambda name: False)


class Trap:
    """Unpickling this object would create MARKER (a stand-in for running any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_npy_with_anything_but_arrays_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "vgg16.npy"
    with path.open("wb") as fh:  # a valid .npy header for an object array, then the payload
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(np.array({"conv1_1": [Trap(marker)]}, dtype=object), fh, protocol=4)
    with pytest.raises(BenchmarkError, match="refusing to load"):
        weights.read_caffe_npy(path)
    assert not marker.exists()
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(BenchmarkError, match="plain array"):
        weights.read_caffe_npy(tmp_path / "plain.npy")


class Py2Array:
    """Pickles an array as a Python 2 numpy did: module numpy.core, the data as a str (what
    Python 3 reads from a Python 2 pickle with encoding='latin1')."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = np.ndarray((0,)).__reduce__()[0]
        data = self.array.tobytes().decode("latin1")
        return (
            rebuild,
            (np.ndarray, (0,), "b"),
            (1, self.array.shape, self.array.dtype, False, data),
        )


def test_python2_era_npy_is_read(tmp_path: Path) -> None:
    w = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    payload = pickle.dumps({"conv1_1": [Py2Array(w), Py2Array(np.ones(3, np.float32))]}, 2)
    payload = payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in payload
    path = tmp_path / "vgg16.npy"
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        fh.write(payload)
    layers = weights.read_caffe_npy(path)
    assert torch.equal(layers["conv1_1/weights"], torch.from_numpy(w))
    assert torch.equal(layers["conv1_1/biases"], torch.ones(3))


def test_caffe_npy_lands_in_the_trunk_in_tf_layout(vgg16_npy: Path) -> None:
    layers = np.load(vgg16_npy, allow_pickle=True).item()  # the test's own file: trusted
    loaded = vgg16_weights(str(vgg16_npy))
    assert loaded is not None and loaded[1].startswith("imagenet:vgg16.npy (sha256 ")
    trunk = vgg_trunk(weights=loaded)
    convs = [m for m in trunk if isinstance(m, nn.Conv2d)]
    np.testing.assert_array_equal(convs[-1].bias.detach().numpy(), layers["conv5_3"][1])
    # conv1_1 at one pixel, as TF computes it: sum over (h, w, in) of W[h, w, in, out] * x
    w, b = layers["conv1_1"]
    x = torch.randn(1, 3, 5, 5)
    expected = np.einsum("hwio,ihw->o", w, x[0, :, 1:4, 1:4].numpy()) + b
    got = convs[0](x)[0, :, 2, 2].detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)  # float32 sums of 27 terms


def test_caffe_input_is_bgr_minus_the_codes_means() -> None:
    pipeline = InputPipeline(Preprocess.caffe((4, 8), (4, 8), False), SourceGeometry())
    image = np.empty((4, 8, 3), np.uint8)
    image[:] = (200, 100, 50)  # R, G, B
    x = pipeline.ground(image)
    # the TF1 loaders: cv2 BGR pixels minus 103.939 (B), 116.779 (G), 123.6 (R), no scaling;
    # float32 rounding of (x/255 - m/255) * 255 stays far below 1e-3
    expected = torch.tensor([50 - 103.939, 100 - 116.779, 200 - 123.6]).view(3, 1, 1)
    torch.testing.assert_close(x, expected.expand(3, 4, 8), atol=1e-3, rtol=0)
    described = pipeline.describe()
    assert described["channel_order"] == "BGR"
    assert described["normalisation"].startswith("caffe: BGR, x - [103.939, 116.779, 123.6]")


def test_the_input_follows_the_weights() -> None:
    on_caffe = SAFAOptions(pretrained="/weights/vgg16.npy")
    with torch.device("meta"), weights.checkpoint_follows():
        caffe, hub = (
            SAFA_SPEC.build(on_caffe).preprocess,
            SAFA_SPEC.build(SAFAOptions()).preprocess,
        )
    assert caffe.bgr and caffe.std == (1 / 255.0,) * 3
    assert not hub.bgr and hub.mean == (0.485, 0.456, 0.406)


def test_safa_paper_options_are_the_official_code() -> None:
    opts = SAFAOptions()
    assert (opts.ground_size, opts.aerial_size, opts.channel_pool) == (
        (112, 616),
        (112, 616),
        "mean",
    )
    assert opts.pretrained is True
    assert SAFAOptions(**SAFA_SPEC.variants["max-pool"]).channel_pool == "max"
    assert SAFAOptions(**SAFA_SPEC.variants["128x512"]).ground_size == (128, 512)
    with pytest.raises(ValueError, match="no pretrained weights"):
        SAFAOptions(backbone="tiny")


def preflight(reg: Any, configs: list[Any], descriptors: Path | None = None) -> None:
    """The checks `run` makes before any work (`eval --descriptors` with DESCRIPTORS)."""
    preflight_jobs(reg, [plan(reg, cfg, descriptors=descriptors) for cfg in configs])


def test_preflight_names_missing_weights_before_any_work(offline: None, tmp_path: Path) -> None:
    reg = build_registry()
    paper = resolve(reg.model("safa"), {}, quick=False)
    with pytest.raises(BenchmarkError) as err:
        preflight(reg, [paper])
    message = str(err.value)
    assert "ImageNet VGG16" in message and "vgg16.npy" in message
    assert "--pretrained FILE" in message and "--set model.pretrained=false" in message
    saved = tmp_path / "saved.descriptors.safetensors"
    saved.write_bytes(b"")
    preflight(reg, [paper], descriptors=saved)  # evaluating saved work needs no start weights
    preflight(reg, [resolve(reg.model("safa"), {}, quick=True)])  # tiny: from scratch
    preflight(reg, [resolve(reg.model("safa"), {"model": {"pretrained": False}}, quick=False)])
    saig = resolve(reg.model("saig"), {}, quick=False)
    with pytest.raises(BenchmarkError, match="SAIG-D weights, which timm's hub does not hold"):
        preflight(reg, [saig])
    missing = resolve(reg.model("l2ltr"), {"model": {"pretrained": "/nowhere/vit.pth"}}, False)
    with pytest.raises(BenchmarkError, match="does not exist"):
        preflight(reg, [missing])


def test_preflight_accepts_weights_in_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=1.5: False)
    monkeypatch.setattr(weights, "timm_cached", lambda name: name == "vgg16.tv_in1k")
    reg = build_registry()
    preflight(reg, [resolve(reg.model("safa"), {}, quick=False)])


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


@pytest.fixture
def cvusa_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A small CVUSA folder and an environment with no hub and empty weight caches."""
    write_cvusa(tmp_path / "CVUSA")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }
    return tmp_path / "CVUSA", env


def test_paper_run_without_weights_stops_with_exit_2(
    tmp_path: Path, cvusa_env: tuple[Path, dict[str, str]]
) -> None:
    root, env = cvusa_env
    out = cli(
        ["run", "--plugins", "safa", "--dataset", "cvusa", "--data-root", str(root)]
        + ["--regime", "paper", "--results-dir", str(tmp_path / "results")],
        env,
    )
    assert out.returncode == 2, out.stderr
    assert "ImageNet VGG16" in out.stderr and "--pretrained FILE" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list((tmp_path / "results").glob("*.json"))


def test_paper_run_on_a_caffe_npy_trains_with_bgr_input(tmp_path: Path, vgg16_npy: Path) -> None:
    write_cvusa(tmp_path / "CVUSA")
    user = {
        "dataset": "cvusa",
        "data_root": tmp_path / "CVUSA",
        "model": {"pretrained": str(vgg16_npy), "ground_size": [16, 64], "aerial_size": [16, 64]},
        "device": "cpu",
        "epochs": 1,
        "batch_size": 2,
        "limit": 2,
        "profile": False,
        "selection": "last",  # two pairs: nothing to hold out for validation
        "results_dir": tmp_path / "results",
    }
    reg = build_registry()
    cfg = resolve(reg.model("safa"), user, quick=False)
    preflight(reg, [cfg])  # the file is there: nothing else is needed
    result = run_job(reg, cfg).model_dump(mode="json")
    assert result["status"] == "ok" and result["regime"] == "paper", result["error"]
    assert result["initialisation"].startswith("imagenet:vgg16.npy (sha256 ")
    assert result["preprocessing"]["channel_order"] == "BGR"
    assert result["preprocessing"]["normalisation"].startswith("caffe: BGR")
    assert result["training"]["epochs_completed"] == 1
    assert len(result["training"]["history"]) == 1


def test_results_say_from_scratch(tiny_run: dict[str, Any]) -> None:
    reg = build_registry()
    quick = run_job(reg, resolve(reg.model("safa"), {**tiny_run, "epochs": 0}, quick=True))
    assert quick.status == "ok" and quick.initialisation == "from scratch"


def test_run_identity_names_weights_by_content_not_path(tmp_path: Path) -> None:
    reg = build_registry()
    spec = reg.model("safa")
    first, copy, other = (tmp_path / n for n in ("a.npy", "copy.npy", "b.npy"))
    first.write_bytes(b"weights A")
    copy.write_bytes(b"weights A")
    other.write_bytes(b"weights B")

    def run_id(pretrained: bool | str) -> str:
        cfg = resolve(spec, {"model": {"pretrained": pretrained}}, False)
        return plan(reg, cfg).identity.digest

    assert run_id(str(first)) == run_id(str(copy))  # the same weights wherever they lie
    assert len({run_id(str(first)), run_id(str(other)), run_id(True), run_id(False)}) == 4
