"""docs/monai.md's snippets, run: its commands give the numbers it shows, its code runs as written.

The augment example runs on the real BreastMNIST (its counts are the doc's) with a conditional GAN
trained for two steps (the counts do not depend on how good it is); the Python snippets run on the
tiny test checkpoint.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from medgan.cli import main

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "monai.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    """The fenced code blocks of the doc in language ``lang`` ('' for unlabelled ones)."""
    blocks, current, kind = [], None, ""
    for line in DOC.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, kind = [], line[3:].strip()
            else:
                if kind == lang:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


@pytest.mark.integration
@pytest.mark.slow
def test_augment_example_gives_the_datalist_the_doc_shows(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(data_dir))
    cfg = REPO / "configs" / "quickstart.yaml"
    assert (
        main(
            [
                "train",
                str(cfg),
                "--out",
                "runs/quickstart/cgan",
                "--set",
                "train.steps=2",
                "--set",
                "train.tracking=[]",
            ]
        )
        == 0
    )
    command = next(b for b in _blocks("") if b.startswith("medgan augment")).strip()
    argv = shlex.split(command)[1:]
    argv[argv.index("configs/quickstart.yaml")] = str(cfg)
    assert main(argv) == 0
    got = json.loads(Path("aug/datalist.json").read_text())
    shown = next(b for b in _blocks("json") if '"numTraining"' in b)
    for key in ("numTraining", "numSynthetic"):
        assert got[key] == int(re.search(rf'"{key}": (\d+)', shown).group(1)), key
    assert got["name"] == re.search(r'"name": "([^"]+)"', shown).group(1)
    assert got["labels"] == json.loads(re.search(r'"labels": (\{[^}]*\})', shown).group(1))
    first = json.loads(re.search(r'"training":\s+\[(\{[^}]*\})', shown).group(1))
    assert got["training"][0] == first
    # the YAML block documents the options the command sets
    yaml_block = next(b for b in _blocks("yaml") if b.startswith("augment:"))
    assert re.search(r"ratio: ([0-9.]+)", yaml_block).group(1) == re.search(
        r"augment\.ratio=([0-9.]+)", command
    ).group(1)


def test_three_line_diff_is_the_recipe(tiny_checkpoint: Path) -> None:
    """The diff the doc shows is what pipelines/monai_classification.py holds (which the tests run)."""
    diff = next(b for b in _blocks("diff"))
    recipe = (REPO / "pipelines" / "monai_classification.py").read_text(encoding="utf-8")
    norm = lambda line: " ".join(line.split("#")[0].split())  # noqa: E731
    code = {norm(x) for x in recipe.splitlines()}
    for line in diff.splitlines():
        if line.strip() in ("", "..."):
            continue
        body = line[1:] if line[:1] in "+ -" else line
        if line.startswith("-"):
            continue
        assert norm(body) in code or norm(body.replace("runs/quickstart/cgan", "args.synthetic")) in code, (
            body
        )


def test_rand_synthetic_replaced_snippet_runs_and_its_error_reads_as_shown(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from medgan.io.images import write_png

    snippet = next(b for b in _blocks("python") if "RandSyntheticReplaced(" in b)
    snippet = snippet.replace("runs/quickstart/cgan", str(tiny_checkpoint))
    namespace: dict = {}
    exec("from monai.transforms import *\n" + snippet, namespace)
    png = tmp_path / "real.png"
    write_png(png, np.zeros((1, 16, 16)) + np.linspace(-1, 1, 16)[None, None, :])
    out = [namespace["train_tf"]({"image": str(png), "label": 0}) for _ in range(20)]
    assert all(o["image"].shape == (1, 64, 64) for o in out)
    assert 0 < sum(bool(o["synthetic"]) for o in out) < 20  # prob=0.2
    # the misplaced-transform message, as the doc prints it (its 28-px synthesizer is 16 px here)
    shown = re.search(r"^RuntimeError: (applying transform .*)$", DOC, flags=re.M).group(1)
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd

    from medgan.monai import RandSyntheticReplaced

    tf = Compose(
        [
            LoadImaged("image"),
            EnsureChannelFirstd("image"),
            ScaleIntensityd("image"),
            Resized("image", (64, 64)),
            RandSyntheticReplaced("image", str(tiny_checkpoint), prob=0.2),
        ]
    )
    tf.set_random_state(1)
    with pytest.raises(RuntimeError) as info:
        for _ in range(50):
            tf({"image": str(png), "label": 0})
    assert str(info.value) == shown.replace("(1, 28, 28)", "(1, 16, 16)")
