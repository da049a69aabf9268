"""Cost measurement: MAC counts against hand counts, paper parameter counts, profile JSON."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.cli import main
from benchmark.model import CrossViewModel, l2n
from benchmark.profiling import measuring as profiling
from benchmark.profiling.counting import count_macs, count_parameters, einsum_macs
from benchmark.profiling.measuring import PROFILE_KEYS
from benchmark.profiling.reporting import render_profile_table
from benchmark.specs import Preprocess
from plugins.safa import SPEC as SAFA_SPEC

VGG16_CONV_PARAMS = 14_714_688  # conv1_1 .. conv5_3


class KnownNet(nn.Module):
    """conv -> 2-head self-attention (SDPA) -> einsum projection -> matmul -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.proj = nn.Parameter(torch.randn(16, 8))
        self.mix = nn.Parameter(torch.randn(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(torch.relu(self.conv(x)), 1)  # (1, 4, 8, 8)
        q = y.reshape(1, 2, 8, 16)  # 2 heads, 8 tokens, 16 dims
        a = F.scaled_dot_product_attention(q, q, q)
        e = torch.einsum("bhnd,de->bhne", a, self.proj)  # (1, 2, 8, 8)
        m = e @ self.mix  # broadcast matmul
        return self.head(m)


def test_fvcore_count_matches_hand_count_with_attention_and_einsum() -> None:
    macs, uncounted = count_macs(KnownNet().eval(), (torch.randn(1, 3, 8, 8),))
    conv = 8 * 8 * 4 * (3 * 3 * 3)
    attention = 2 * 8 * 8 * (16 + 16)  # Q K^T and softmax(.) V
    einsum = 2 * 8 * 16 * 8
    matmul = 2 * 8 * 8 * 8
    linear = 2 * 8 * 8 * 3
    assert macs == conv + attention + einsum + matmul + linear
    ops = {u["op"]: u["count"] for u in uncounted}
    assert ops == {"aten::max_pool2d": 1}  # skipped ops are listed, the handled ones are not


def test_fvcore_warnings_do_not_reach_the_terminal(capfd, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        count_macs(KnownNet().eval(), (torch.randn(1, 3, 8, 8),))
    assert "Unsupported operator" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]


@pytest.mark.parametrize(
    ("equation", "shapes", "expected"),
    [
        ("bp,kpq->bkq", [(2, 5), (3, 5, 4)], 2 * 5 * 3 * 4),
        ("bi,bj->bij", [(2, 5), (2, 4)], 2 * 5 * 4),  # outer product: no summed index
        ("...ij,...jk", [(7, 2, 3), (3, 4)], 7 * 2 * 3 * 4),  # ellipsis, implicit output
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], 2 * 3 * 4 + 2 * 4 * 5),  # pairwise path
        ("ii->i", [(3, 3)], 0),
    ],
)
def test_einsum_macs(equation: str, shapes: list[tuple[int, ...]], expected: int) -> None:
    assert einsum_macs(equation, shapes) == expected


def test_safa_paper_parameters_on_meta_device() -> None:
    shared = count_parameters(SAFA_SPEC, SAFA_SPEC.variants["128x512"])  # P = 4 x 16 = 64
    heads_64 = 8 * (64 * 32 + 32 + 32 * 64 + 64)
    assert heads_64 == 33_536
    assert shared["params_m"] * 1e6 == pytest.approx(2 * (VGG16_CONV_PARAMS + heads_64), abs=0.5)
    assert shared["params_ground_m"] == shared["params_aerial_m"] == shared["params_m"] / 2
    assert shared["descriptor_dim"] == 4096
    official = count_parameters(SAFA_SPEC, SAFA_SPEC.options())  # paper = 112x616: P = 80
    assert official["params_m"] * 1e6 == pytest.approx(2 * (VGG16_CONV_PARAMS + 52_160), abs=0.5)
    assert official["params_m"] == pytest.approx(29.53, abs=0.005)
    assert official["params_m"] == pytest.approx(SAFA_SPEC.card.reported_cost["params_m"], rel=0.01)


class SharedHead(CrossViewModel):
    """Two convolutions, one per view, and a linear head both views share."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Conv2d(3, 4, 1)
        self.a = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 2)
        self.head.requires_grad_(False)
        self.descriptor_dim = 2
        self.preprocess = Preprocess((4, 8), (4, 4), polar=False)

    def embed_ground(self, x: torch.Tensor) -> torch.Tensor:
        return l2n(self.head(self.g(x).mean((2, 3))))

    def embed_aerial(self, x: torch.Tensor) -> torch.Tensor:
        return l2n(self.head(self.a(x).mean((2, 3))))

    def branches(self) -> dict[str, nn.Module]:
        return {
            "ground": nn.ModuleList([self.g, self.head]),
            "aerial": nn.ModuleList([self.a, self.head]),
        }


def test_shared_module_counts_in_both_branches_but_once_in_total() -> None:
    profile = profiling.profile_model(SharedHead(), "cpu", batch_size=2, warmup=0, iters=1)
    conv, head = 3 * 4 + 4, 4 * 2 + 2
    assert profile["params_m"] * 1e6 == pytest.approx(2 * conv + head)
    assert profile["params_ground_m"] * 1e6 == pytest.approx(conv + head)
    assert profile["params_aerial_m"] * 1e6 == pytest.approx(conv + head)
    assert profile["trainable_params_m"] * 1e6 == pytest.approx(2 * conv)
    # per pair: 1x1 convs over 4x8 and 4x4 pixels, the shared head once per view
    assert profile["gmacs"] * 1e9 == pytest.approx(12 * (32 + 16) + 2 * 8, abs=1)


def test_cpu_peak_memory_counts_weights_inputs_and_live_activations() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(1, 3, 8, 8)
    weights = (3 * 4 + 4 + 4 * 2 + 2) * 4
    # at most two activations live at once: conv1's output while ReLU writes its own (4 x 64
    # floats each), then ReLU's while conv2 writes 2 x 64 floats
    peak = weights + x.numel() * 4 + 2 * 4 * 64 * 4
    assert profiling.cpu_peak_bytes(model, (x,)) == peak
    inplace = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))
    inplace.load_state_dict(model.state_dict())
    assert profiling.cpu_peak_bytes(inplace, (x,)) == peak - 4 * 64 * 4 + 2 * 64 * 4


def test_cuda_out_of_memory_halves_the_batch(monkeypatch) -> None:
    def fake_forward(model, inputs, device, warmup, iters):
        if inputs[0].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return 0.5

    monkeypatch.setattr(profiling, "_time_forward", fake_forward)
    monkeypatch.setattr(profiling, "_pair", lambda m, b, d, t: (torch.zeros(b), torch.zeros(b)))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    rate, used = profiling._throughput(nn.Identity(), torch.device("cuda"), torch.float32, 8, 0, 1)
    assert (rate, used) == (4.0, 2)


def test_profile_json_schema_of_tiny_safa(capsys, monkeypatch) -> None:
    monkeypatch.setattr(profiling, "CPU_TIMING", {"batch_size": 2, "warmup": 0, "iters": 1})
    assert main(["profile", "--plugins", "safa", "--variant", "tiny", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert set(PROFILE_KEYS) <= set(row)
    assert row["plugin"] == "safa" and row["variant"] == "tiny"
    for key in (
        "params_m",
        "params_ground_m",
        "params_aerial_m",
        "trainable_params_m",
        "gmacs",
        "gflops",
        "latency_ms",
        "throughput",
        "peak_memory_mb",
    ):
        assert isinstance(row[key], float) and row[key] >= 0, key
    assert row["params_m"] == pytest.approx(row["params_ground_m"] + row["params_aerial_m"])
    assert row["gflops"] == pytest.approx(2 * row["gmacs"], abs=1e-3)
    assert row["gmacs"] > 1.0  # a 112x616 pair (the paper sizes) through the tiny VGG
    assert row["flop_counter"].startswith("fvcore ")
    assert all(set(u) == {"op", "count"} and u["count"] > 0 for u in row["uncounted_ops"])
    assert row["input_ground"] == [112, 616] and row["input_aerial"] == [112, 616]
    assert row["descriptor_dim"] == 8 * 128  # 8 SAFA heads x the tiny trunk's 128 channels
    assert row["batch_size"] == 2 and row["precision"] == "float32"
    assert row["device"].startswith("cpu")
    assert row["peak_memory_mb"] > 1.0  # 128x512 activations, which a process's RSS hid
    assert row["load_per_core"] is None or row["load_per_core"] >= 0
    assert row["reported_cost"] == dict(SAFA_SPEC.card.reported_cost)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_table_shows_reported_beside_measured() -> None:
    row = {
        "plugin": "safa",
        "variant": "paper",
        "params_m": 29.533696,
        "gmacs": 42.25,
        "gflops": 84.5,
        "input_ground": [112, 616],
        "input_aerial": [112, 616],
        "latency_ms": 500.0,
        "throughput": 2.0,
        "batch_size": 4,
        "peak_memory_mb": 300.0,
        "uncounted_ops": [{"op": "aten::max_pool2d", "count": 10}],
        "precision": "float32",
        "device": "cpu",
        "flop_counter": "fvcore x",
        "reported_cost": dict(SAFA_SPEC.card.reported_cost),
    }
    table = render_profile_table([row], wide=True)
    head, _, line = table.splitlines()[:3]
    cells = dict(zip(_cells(head), _cells(line), strict=True))
    assert (cells["params M"], cells["paper M"]) == ("29.53", "29.50")
    assert cells["GMACs"] == "42.25" and cells["paper G (unit, input)"].startswith("42.24 (MACs")
    assert cells["Δ compute"] == "+0.0%"  # the paper's MACs compared with our GMACs, same config
    shared = render_profile_table([{**row, "variant": "128x512", "gmacs": 40.1}], wide=True)
    shared_cells = dict(zip(_cells(head), _cells(shared.splitlines()[2]), strict=True))
    assert shared_cells["Δ compute"] == "-"  # not the configuration the paper measured
    assert "max_pool2d x10" in table
    other = render_profile_table([{**row, "variant": "tiny"}], wide=True).splitlines()[2]
    assert dict(zip(_cells(head), _cells(other), strict=True))["Δ compute"] == "-"

    # the default table fits an 80-column terminal, the paper's deltas in the cells
    narrow = render_profile_table([row, {**row, "plugin": "raw-pixels", "variant": "shallow-gap"}])
    assert max(len(line) for line in narrow.splitlines()) <= 80
    head, _, line = narrow.splitlines()[:3]
    cells = dict(zip(re.split(r"\s{2,}", head), re.split(r"\s{2,}", line), strict=True))
    assert cells["params M"] == "29.53 (+0.1%)" and cells["GMACs"] == "42.25 (+0.0%)"
    assert cells["latency ms"] == "500.0" and "paper M" not in cells and "max_pool2d" not in narrow
    assert "--wide" in narrow


def test_unknown_variant_is_a_clear_error(capsys) -> None:
    assert main(["profile", "--plugins", "safa", "--variant", "huge"]) == 2
    assert "Available variants" in capsys.readouterr().err


def test_profile_goes_through_the_config_system(capsys, monkeypatch, tmp_path) -> None:
    """An ablation (--set, --config) and a regime are profiled as a run would build them,
    and the paper's figures are compared only with the paper's own configuration."""
    monkeypatch.setattr(profiling, "CPU_TIMING", {"batch_size": 1, "warmup": 0, "iters": 1})
    file = tmp_path / "heads.yaml"
    file.write_text("model:\n  heads: 2\n")
    args = ["profile", "--plugins", "safa", "--regime", "quick", "--format", "json"]
    assert main([*args, "--device", "cpu"]) == 0
    (base,) = json.loads(capsys.readouterr().out)
    assert main([*args, "--device", "cpu", "--config", str(file)]) == 0
    (ablation,) = json.loads(capsys.readouterr().out)
    assert (base["variant"], base["regime"], base["input_ground"]) == ("tiny", "quick", [32, 128])
    assert ablation["model_overrides"]["heads"] == 2 and "heads" not in base["model_overrides"]
    assert ablation["descriptor_dim"] == base["descriptor_dim"] // 4  # 2 of SAFA's 8 heads
    assert ablation["batch_size"] == 1  # the one timing procedure (profiling.timing)
    paper_row = {**ablation, "variant": SAFA_SPEC.card.reported_cost.get("variant", "paper")}

    def delta(row: dict) -> str:
        head, _, line = render_profile_table([row], wide=True).splitlines()[:3]
        return dict(zip(_cells(head), _cells(line), strict=True))["Δ params"]

    assert delta({**paper_row, "model_overrides": {}}) != "-"
    assert delta(paper_row) == "-"  # an ablation is not what the paper measured
