"""The bad-input matrix: every mistake a user can make gets one clear message naming the
problem, no traceback, a non-zero exit code, and leaves no partial output behind."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from benchmark.cli import main
from benchmark.results import RunResult
from tests.conftest import TINY_WORLD
from tests.fixtures_datasets import coded_image, save, write_cvusa

pytestmark = pytest.mark.usefixtures("one_thread")

N_TEST = 4


def results_of(tmp: Path) -> Path:
    """Where a case's run writes its results."""
    return tmp / "results"


def synthetic(tmp: Path, *extra: str, command: str = "run") -> list[str]:
    """A one-epoch tiny SAFA run on the tiny synthetic world."""
    world = [f"dataset_options.{k}={json.dumps(v)}" for k, v in TINY_WORLD.items()]
    training = ["--batch-size", "4"] if command == "run" else []
    return [
        command, "--plugins", "safa", *training, "--limit", "8", "--device", "cpu",
        "--results-dir", str(results_of(tmp)), "--set", "profile=false",
        *[a for kv in world for a in ("--set", kv)], *extra,
    ]  # fmt: skip


def cvusa_root(tmp: Path) -> tuple[Path, list[str]]:
    """A small CVUSA folder in its official layout, and the ids of its test pairs."""
    root = tmp / "CVUSA"
    sides = write_cvusa(root, n_train=4, n_test=N_TEST)
    return root, sides["test"]


def cvusa(tmp: Path, *extra: str, root: Path | None = None) -> list[str]:
    """Evaluate an untrained tiny SAFA on CVUSA at ROOT (a fresh folder by default)."""
    root = root or cvusa_root(tmp)[0]
    return [
        "run", "--plugins", "safa", "--regime", "quick", "--dataset", "cvusa", "--data-root",
        str(root), "--epochs", "0", "--device", "cpu", "--results-dir", str(results_of(tmp)),
        "--set", "profile=false", *extra,
    ]  # fmt: skip


def damaged_cvusa(
    damage: Callable[[Path, list[str]], Path], *extra: str
) -> Callable[[Path], list[str]]:
    """A case on a CVUSA folder after DAMAGE(root, test ids) ran (it returns the bad path)."""

    def case(tmp: Path) -> list[str]:
        root, ids = cvusa_root(tmp)
        bad = damage(root, ids)
        (tmp / "bad-path").write_text(str(bad))
        return cvusa(tmp, *extra, root=root)

    return case


def truncate(root: Path, ids: list[str]) -> Path:
    """Cut a test panorama to half its bytes."""
    path = root / "streetview/panos" / f"{ids[1]}.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def sixteen_bit(root: Path, ids: list[str]) -> Path:
    """Replace a test aerial tile by a 16-bit greyscale PNG."""
    path = root / "bingmap/19" / f"{ids[0]}.jpg"
    Image.fromarray(np.full((48, 48), 40_000, dtype=np.uint16)).save(path, format="PNG")
    return path


def not_square(root: Path, ids: list[str]) -> Path:
    """Replace a test aerial tile by a non-square one (the polar transform needs squares)."""
    path = root / "bingmap/19" / f"{ids[2]}.jpg"
    save(path, coded_image(48, 40, 2))
    return path


def all_test_panos_missing(root: Path, ids: list[str]) -> Path:
    """Delete every panorama the test split file names."""
    for i in ids:
        (root / "streetview/panos" / f"{i}.jpg").unlink()
    return root / "streetview/panos" / f"{ids[0]}.jpg"


def empty_split(root: Path, ids: list[str]) -> Path:
    """Empty the test split file."""
    path = root / "splits/val-19zl.csv"
    path.write_text("")
    return path


def wrong_layout(dataset: str) -> Callable[[Path], list[str]]:
    """A case pointing DATASET at a folder that holds only part of CVUSA's tree."""

    def case(tmp: Path) -> list[str]:
        root = tmp / "not-cvusa"
        (root / "bingmap/19").mkdir(parents=True)
        args = cvusa(tmp, root=root)
        args[args.index("cvusa")] = dataset
        return args

    return case


def config_file(name: str, text: str) -> Callable[[Path], list[str]]:
    """A case run with --config NAME holding TEXT."""

    def case(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_text(text)
        return synthetic(tmp, "--config", str(path))

    return case


def weights(name: str, write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A case evaluating the weights file NAME written by WRITE."""

    def case(tmp: Path) -> list[str]:
        path = tmp / name
        write(path)
        return synthetic(tmp, "--weights", str(path), command="eval")

    return case


def foreign_weights(path: Path) -> None:
    """A safetensors file of some other network."""
    save_file({"head.weight": torch.zeros(3, 3), "head.bias": torch.zeros(3)}, str(path))


def not_a_file_parent(tmp: Path) -> list[str]:
    """A results directory below a regular file (cannot be created, even by root)."""
    (tmp / "a-file").write_text("")
    args = synthetic(tmp)
    args[args.index("--results-dir") + 1] = str(tmp / "a-file" / "results")
    return args


def read_only_results(tmp: Path) -> list[str]:
    """A results directory without write permission."""
    results_of(tmp).mkdir()
    results_of(tmp).chmod(0o500)
    return synthetic(tmp)


def without_data_root(tmp: Path) -> list[str]:
    """A CVUSA run without --data-root."""
    args = cvusa(tmp, root=tmp)
    i = args.index("--data-root")
    return args[:i] + args[i + 2 :]


def plugins(tmp: Path, names: str) -> list[str]:
    """The synthetic case with --plugins NAMES."""
    args = synthetic(tmp)
    args[args.index("--plugins") + 1] = names
    return args


def alias_bomb(levels: int) -> str:
    """A 'billion laughs' YAML file: each level repeats the previous one nine times."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def bad_path(tmp: Path) -> str:
    """The file a damaging case broke."""
    return (tmp / "bad-path").read_text()


# (id, argv builder, exit code, fragments the message must hold; "{bad}" = the broken file)
MATRIX: list[tuple[str, Callable[[Path], list[str]], int, list[str]]] = [
    (
        "unknown-plugin",
        lambda t: [*synthetic(t)[:2], "safaa", *synthetic(t)[3:]],
        2,
        ["'safaa'", "Did you mean 'safa'"],
    ),
    (
        "unknown-dataset",
        lambda t: synthetic(t, "--dataset", "synthetik"),
        2,
        ["'synthetik'", "Did you mean 'synthetic'"],
    ),
    (
        "unknown-loss",
        lambda t: synthetic(t, "--set", "loss=soft-margin-triplett"),
        2,
        ["'soft-margin-triplett'", "Did you mean 'soft-margin-triplet'"],
    ),
    (
        "unknown-metric",
        lambda t: synthetic(t, "--set", 'metrics=["recal"]'),
        2,
        ["'recal'", "Did you mean 'recall'"],
    ),
    ("unknown-split", lambda t: synthetic(t, "--split", "tset"), 2, ["no split 'tset'"]),
    ("missing-data-root", without_data_root, 2, ["needs --data-root"]),
    (
        "data-root-does-not-exist",
        lambda t: cvusa(t, root=t / "nowhere"),
        2,
        ["nowhere does not exist", "should look like"],
    ),
    (
        "wrong-layout-cvusa",
        wrong_layout("cvusa"),
        2,
        [
            "not-cvusa does not look like a cvusa folder",
            "splits/train-19zl.csv",
            "streetview/panos",
            "bingmap/19/0000001.jpg",
        ],
    ),
    (
        "wrong-layout-cvact",
        wrong_layout("cvact"),
        2,
        ["not-cvusa does not look like a cvact folder", "ACT_data.mat", "satview_polish"],
    ),
    (
        "wrong-layout-vigor",
        wrong_layout("vigor"),
        2,
        ["not-cvusa does not look like a vigor folder", "satellite_list.txt", "NewYork/panorama"],
    ),
    (
        "split-names-missing-images",
        damaged_cvusa(all_test_panos_missing),
        2,
        [f"none of the {N_TEST} pairs", "{bad}"],
    ),
    ("empty-split", damaged_cvusa(empty_split), 2, ["{bad}", "lists no pairs"]),
    (
        "corrupt-image",
        damaged_cvusa(truncate),
        1,
        ["{bad}", "could not be decoded", "skip_bad_images"],
    ),
    (
        "corrupt-image-in-loader-worker",
        damaged_cvusa(truncate, "--workers", "1"),
        1,
        ["{bad}", "could not be decoded"],
    ),
    ("wrong-image-mode", damaged_cvusa(sixteen_bit), 1, ["{bad}", "I;16", "8-bit"]),
    ("wrong-image-size", damaged_cvusa(not_square), 1, ["{bad}", "(40x48 pixels)", "square"]),
    (
        "value-out-of-range",
        lambda t: synthetic(t, "--set", "lr=-1"),
        2,
        ["lr:", "greater than 0", "-1"],
    ),
    (
        "value-of-wrong-type",
        lambda t: synthetic(t, "--set", "batch_size=eight"),
        2,
        ["batch_size:", "valid integer", "'eight'"],
    ),
    (
        "dataset-option-out-of-range",
        lambda t: synthetic(t, "--set", "dataset_options.n_test=0"),
        2,
        ["dataset_options.n_test", "greater than or equal to 1"],
    ),
    (
        "unknown-set-key",
        lambda t: synthetic(t, "--set", "lrr=0.1"),
        2,
        ["Unknown setting 'lrr'", "Did you mean 'lr'"],
    ),
    (
        "unknown-model-option",
        lambda t: synthetic(t, "--set", "model.chanel_pool=mean"),
        2,
        ["Unknown setting 'model.chanel_pool'", "Did you mean 'channel_pool'"],
    ),
    ("set-without-value", lambda t: synthetic(t, "--set", "lr"), 2, ["KEY=VALUE", "'lr'"]),
    (
        "invalid-yaml",
        config_file("bad.yaml", "epochs: 1\nlr: [0.1\nseed: 2\n"),
        2,
        ["bad.yaml", "not valid YAML", "line 3"],
    ),
    (
        "invalid-toml",
        config_file("bad.toml", "epochs = 1\nlr = \n"),
        2,
        ["bad.toml", "not valid TOML", "line 2"],
    ),
    ("config-not-a-mapping", config_file("list.yaml", "- 1\n- 2\n"), 2, ["mapping"]),
    (
        "weights-do-not-match",
        weights("other.safetensors", foreign_weights),
        2,
        [
            "do not match the model",
            "missing keys",
            "2 unexpected keys: head.bias (3,), head.weight (3, 3)",
        ],
    ),
    (
        "weights-not-safetensors",
        weights("junk.safetensors", lambda p: p.write_bytes(b"junk")),
        2,
        ["junk.safetensors", "not a readable safetensors file"],
    ),
    (
        "weights-neither-format",
        weights("junk.pth", lambda p: p.write_bytes(b"not a pickle")),
        2,
        ["junk.pth", "neither safetensors nor a torch checkpoint", "weights_only"],
    ),
    (
        "weights-missing",
        lambda t: synthetic(t, "--weights", str(t / "no.pt"), command="eval"),
        2,
        ["no.pt", "does not exist"],
    ),
    (
        "set-value-and-group",
        lambda t: synthetic(t, "--set", "a=1", "--set", "a.b=2"),
        2,
        ["--set 'a.b=2' conflicts", "a was given a value"],
    ),
    ("plugins-empty", lambda t: plugins(t, ",,,"), 2, ["no method named in ',,,'"]),
    ("plugin-twice", lambda t: plugins(t, "safa,safa"), 2, ["asked for twice"]),
    (
        "seed-too-large",
        lambda t: synthetic(t, "--seed", str(2**32)),
        2,
        ["seed: Input should be less than 4294967296"],
    ),
    (
        "protocol-seed-too-large",
        lambda t: synthetic(t, "--set", f"protocol_seed={2**40}"),
        2,
        ["protocol_seed: Input should be less than 4294967296"],
    ),
    ("yaml-alias-bomb", config_file("bomb.yaml", alias_bomb(12)), 2, ["expands to more than"]),
    (
        "identity-by-set",
        lambda t: synthetic(t, "--set", "plugin=cvm_net"),
        2,
        ["'plugin' is part of a run's identity", "--plugins cvm_net"],
    ),
    (
        "identity-in-a-file",
        config_file("variant.yaml", "variant: paper\n"),
        2,
        ["'variant' is part of a run's identity", "--variant paper"],
    ),
    (
        "pretrained-ignored-by-variant",
        lambda t: synthetic(t, "--set", "model.pretrained=/etc/passwd"),
        2,
        ["the tiny backbone has no pretrained weights", "set model.pretrained=false"],
    ),
    (
        "pretrained-on-a-model-without-weights",
        lambda t: [*plugins(t, "raw-pixels"), "--pretrained"],
        2,
        ["raw-pixels's 'tiny' variant loads no pretrained weights"],
    ),
    (
        "cuda-without-cuda",
        lambda t: synthetic(t, "--device", "cuda"),
        2,
        ["Device 'cuda' was requested but CUDA is not available"],
    ),
    ("results-dir-not-creatable", not_a_file_parent, 2, ["results directory", "not writable"]),
    ("results-dir-read-only", read_only_results, 2, ["results directory", "not writable"]),
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Exit code and stderr of the CLI run in this process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects malformed flags itself
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def partial_files(tmp: Path) -> list[Path]:
    """Temporary or half-written files anywhere under TMP."""
    return [p for p in tmp.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".partial")]


@pytest.mark.parametrize(
    ("build", "code", "fragments"), [case[1:] for case in MATRIX], ids=[case[0] for case in MATRIX]
)
def test_bad_input_is_one_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    build: Callable[[Path], list[str]],
    code: int,
    fragments: list[str],
) -> None:
    if build is read_only_results and os.geteuid() == 0:
        pytest.skip("root can write to a read-only folder; the not-creatable case covers it")
    if "Device 'cuda' was requested" in "".join(fragments) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = build(tmp_path)
    exit_code, err = run_cli(argv, capsys)
    assert exit_code == code, err
    assert "Traceback" not in err
    for fragment in fragments:
        if fragment == "{bad}":
            fragment = bad_path(tmp_path)
        assert fragment in err, (fragment, err)
    assert not partial_files(tmp_path)
    written = sorted(results_of(tmp_path).glob("*")) if results_of(tmp_path).is_dir() else []
    if code == 2:  # found before any work: nothing is written
        assert not written
    else:  # found during the run: only the failed run's complete record
        assert [p.suffix for p in written] == [".json"]
        assert RunResult.model_validate_json(written[0].read_text()).status == "failed"


def test_malformed_flag_is_rejected_by_the_parser(tmp_path: Path, capsys) -> None:
    code, err = run_cli(synthetic(tmp_path, "--epochs", "two"), capsys)
    assert code == 2 and "invalid int value: 'two'" in err and "Traceback" not in err
    assert not results_of(tmp_path).exists()


def test_skip_bad_images_counts_them_in_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    root, ids = cvusa_root(tmp_path)
    bad = truncate(root, ids)
    code, err = run_cli(cvusa(tmp_path, "--skip-bad-images", root=root), capsys)
    assert code == 0, err
    warned = [str(w.message) for w in recwarn]
    assert any(str(bad) in w and "black" in w for w in warned), warned  # names the file
    (path,) = results_of(tmp_path).glob("*.json")
    result = RunResult.model_validate_json(path.read_text())
    assert result.status == "ok"
    assert result.dataset_info["skipped_bad_images"] == {"count": 1, "examples": [str(bad)]}


def test_partly_missing_images_are_dropped_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    root, ids = cvusa_root(tmp_path)
    (root / "streetview/panos" / f"{ids[0]}.jpg").unlink()
    greyscale = root / "bingmap/19" / f"{ids[1]}.jpg"
    Image.open(greyscale).convert("L").save(greyscale)  # another mode: read as RGB
    code, err = run_cli(cvusa(tmp_path, root=root), capsys)
    assert code == 0, err
    warned = [str(w.message) for w in recwarn]
    assert any(
        "1 ground and 0 aerial images named by the split files are missing" in w for w in warned
    ), warned
    (path,) = results_of(tmp_path).glob("*.json")
    result = RunResult.model_validate_json(path.read_text())
    assert result.dataset_info["test_queries"] == N_TEST - 1
    assert result.dataset_info["missing"]["test"]["dropped_pairs"] == 1


def test_corrupt_result_json_is_skipped_by_the_leaderboard(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli(synthetic(tmp_path, "--epochs", "0"), capsys)[0] == 0
    results = results_of(tmp_path)
    (good,) = results.glob("*.json")
    corrupt = results / "synthetic-test__broken.json"
    corrupt.write_text(good.read_text()[:100])
    output = tmp_path / "LEADERBOARD.md"
    code, err = run_cli(
        ["leaderboard", "--results-dir", str(results), "--output", str(output)], capsys
    )
    assert code == 0 and "Traceback" not in err
    assert "warning" in err and str(corrupt) in err
    assert "safa" in output.read_text()
