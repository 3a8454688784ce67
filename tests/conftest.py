"""Shared fixtures: the real data directory (../shared/data or $MEDGAN_DATA_DIR) and tiny synthetic data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MEDGAN_DATA_DIR`` if set, else ``../shared/data`` beside the repository."""
    env = os.environ.get("MEDGAN_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def in_ci() -> bool:
    """True under ``.ci/run`` (it sets ``MEDGAN_CI=1``): there every tool the tests use must be installed."""
    return os.environ.get("MEDGAN_CI", "") not in ("", "0")


def require_tool(name: str, why: str = "") -> str:
    """The path of the executable ``name``, for a test that needs it.

    When it is missing the test fails under CI (``MEDGAN_CI`` set: ``.ci/run`` installs the tool, so
    its absence means the install broke and the test would otherwise pass unseen) and is skipped
    elsewhere (a local run without the tool).
    """
    path = shutil.which(name)
    if path:
        return path
    what = f"{name} is not installed" + (f" ({why})" if why else "")
    if in_ci():
        pytest.fail(
            f"{what}; MEDGAN_CI is set and .ci/run installs it, so this test may not skip", pytrace=False
        )
    pytest.skip(what)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` (tests/test_gpu.py) are skipped where CUDA is not available."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory; integration tests skip when it is absent."""
    d = shared_data_dir()
    if not (d / "README.md").is_file():
        pytest.skip(f"real data directory not found at {d} (set MEDGAN_DATA_DIR)")
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches and downloads never touch the user's home or the data directory during tests."""
    monkeypatch.setenv("MEDGAN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def write_fake_medmnist(
    path: Path, size: int = 16, n_train: int = 48, channels: int = 1, seed: int = 0, n_classes: int = 2
) -> Path:
    """A tiny MedMNIST-format .npz: class 0 dark discs, class 1 bright squares, class k > 1 bars of
    rising brightness (learnable, distinct)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    arrays = {}
    for split, n in (("train", n_train), ("val", 8), ("test", 8)):
        labels = np.arange(n) % n_classes
        imgs = np.zeros((n, size, size), np.uint8)
        for i, lab in enumerate(labels):
            cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
            if lab == 0:
                imgs[i][(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 4) ** 2] = 80
            elif lab == 1:
                imgs[i][max(cy - 3, 0) : cy + 3, max(cx - 3, 0) : cx + 3] = 230
            else:
                imgs[i][max(cy - 1, 0) : cy + 1, :] = 100 + 30 * lab
        if channels == 3:
            imgs = np.repeat(imgs[..., None], 3, axis=-1)
        arrays[f"{split}_images"] = imgs
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


TINY_MODEL = {"g_channels": 32, "d_channels": 16, "z_dim": 16, "embed_dim": 8}
#: A tiny diffusion model: two levels of 8 and 16 channels, 3 DDIM steps (2 for selection and grids).
TINY_DIFFUSION = {
    "kind": "diffusion",
    "channels": [8, 16],
    "attention_levels": [False, True],
    "head_channels": 8,
    "num_train_timesteps": 100,
    "sampling_steps": 3,
    "select_sampling_steps": 2,
}


def tiny_config(steps: int = 4, **train: object) -> dict:
    """A config dict for a tiny, fast conditional GAN on the fake MedMNIST set ``tinymnist``."""
    t = {
        "steps": steps,
        "batch_size": 8,
        "log_every": 1,
        "sample_every": 2,
        "checkpoint_every": 2,
        "keep_last": 5,
    }
    t.update(train)
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"source": {"kind": "medmnist", "name": "tinymnist"}},
        "model": dict(TINY_MODEL),
        "train": t,
    }


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding ``medmnist/tinymnist.npz`` (16 px, 2 classes)."""
    d = tmp_path_factory.mktemp("tinydata")
    write_fake_medmnist(d / "medmnist" / "tinymnist.npz")
    return d


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained (4 steps) tiny conditional GAN checkpoint."""
    from medgan.config import config_from_dict
    from medgan.train import train

    run = tmp_path_factory.mktemp("tinyrun")
    return train(config_from_dict(tiny_config()), run, tiny_data_dir)


@pytest.fixture(scope="session")
def tiny_diffusion_checkpoint(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained (4 steps) tiny diffusion checkpoint on the same data."""
    from medgan.config import config_from_dict
    from medgan.train import train

    run = tmp_path_factory.mktemp("tinydiffusion")
    return train(config_from_dict({**tiny_config(), "model": dict(TINY_DIFFUSION)}), run, tiny_data_dir)


#: A tiny mask-conditioned SPADE model (16 px): two levels of 8 and 16 channels, one 2-layer discriminator.
TINY_SPADE = {
    "kind": "spade",
    "z_dim": 8,
    "channels": [8, 16],
    "spade_hidden": 8,
    "d_channels": 8,
    "d_scales": 1,
    "d_layers": 2,
}


def write_pairs_folder(root: Path, n: int = 24, size: int = 16) -> Path:
    """An image folder with lesion masks: ``pairs/labels.csv`` (path, label, mask), ``n`` grey PNGs
    of ``size`` px, class ``lesion`` holding a bright asymmetric L-shaped lesion where its mask
    says (at a position that varies), class ``normal`` an empty mask. Returns the CSV."""
    from PIL import Image

    rng = np.random.default_rng(0)
    d = root / "pairs"
    d.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,mask"]
    for i in range(n):
        lesion = i % 2 == 1
        img = rng.integers(20, 90, (size, size)).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        if lesion:
            r, c = rng.integers(1, size // 2, 2)
            mask[r : r + 6, c : c + 2] = 255  # the L's stem
            mask[r + 4 : r + 6, c : c + 5] = 255  # its foot, to the right
            img[mask > 0] = 230
        Image.fromarray(img).save(d / f"img{i:02d}.png")
        Image.fromarray(mask).save(d / f"img{i:02d}_mask.png")
        rows.append(f"img{i:02d}.png,{'lesion' if lesion else 'normal'},img{i:02d}_mask.png")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d / "labels.csv"


def tiny_spade_config(steps: int = 4, **train: object) -> dict:
    """A config dict for a tiny SPADE model on the image folder of :func:`write_pairs_folder`."""
    cfg = tiny_config(steps, **train)
    cfg["data"] = {
        "source": {"kind": "images", "labels_csv": "pairs/labels.csv", "classes": ["normal", "lesion"]},
        "size": 16,
        "channels": 1,
        "splits": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    }
    cfg["model"] = dict(TINY_SPADE)
    return cfg


@pytest.fixture(scope="session")
def tiny_pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding ``pairs/`` (:func:`write_pairs_folder`)."""
    d = tmp_path_factory.mktemp("pairsdata")
    write_pairs_folder(d)
    return d


@pytest.fixture(scope="session")
def tiny_spade_checkpoint(tiny_pairs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained (4 steps) tiny SPADE checkpoint on ``pairs/``."""
    from medgan.config import config_from_dict
    from medgan.train import train

    run = tmp_path_factory.mktemp("tinyspade")
    return train(config_from_dict(tiny_spade_config()), run, tiny_pairs_dir)


@pytest.fixture(scope="session")
def pool_features(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A TorchScript feature extractor (4x4 average pooling): a fast stand-in for Inception,
    sensitive to image content (for selection, gates and evaluation tests)."""
    import torch

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    path = tmp_path_factory.mktemp("ts") / "pool.pt"
    torch.jit.script(Pool()).save(str(path))
    return str(path)
