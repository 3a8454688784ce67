"""The MONAI plug-in: SyntheticDataset, MixedDataset over MONAI datasets, RandSyntheticReplaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd
from PIL import Image

from medgan.errors import InputError
from medgan.monai import MixedDataset, RandSyntheticReplaced, SyntheticDataset
from medgan.seeding import derive_seed
from medgan.synthesis.cgan import CGANSynthesizer


@pytest.fixture()
def png_files(tmp_path: Path) -> list[dict]:
    """12 real 16-px PNG slices, labels 0/1 alternating (8 of class 0, 4 of class 1)."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(12):
        p = tmp_path / f"real {i}.png"
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(p)
        files.append({"image": str(p), "label": 0 if i % 3 else 1})
    return files


REAL_TF = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), ScaleIntensityd("image")])


def test_synthetic_dataset_is_medgan_generates_plan(tiny_checkpoint: Path) -> None:
    ds = SyntheticDataset(tiny_checkpoint, n_per_class=3, seed=7, device="cpu")
    assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    item = ds[4]
    assert set(item) == {"image", "label", "synthetic", "seed"}
    assert isinstance(item["image"], MetaTensor) and item["image"].shape == (1, 16, 16)
    assert item["label"] == 1 and item["synthetic"] is True and item["seed"] == derive_seed(7, 1, 1)
    assert item["image"].meta["synthetic"] is True
    ref = CGANSynthesizer(tiny_checkpoint).generate([1], [derive_seed(7, 1, 1)])[0]
    # MONAI's spatial order (W, H) and ScaleIntensityd's per-image (0, 1) by default
    lo, hi = ref.min(), ref.max()
    torch.testing.assert_close(item["image"].as_tensor(), ((ref - lo) / (hi - lo)).transpose(-1, -2))
    assert float(item["image"].min()) == 0.0 and float(item["image"].max()) == 1.0
    native = SyntheticDataset(
        tiny_checkpoint, n_per_class=3, seed=7, intensity="fixed", value_range=(-1.0, 1.0), device="cpu"
    )
    torch.testing.assert_close(native[4]["image"].as_tensor(), ref.transpose(-1, -2))
    with pytest.raises(InputError, match="intensity: must be one of minmax, fixed"):
        SyntheticDataset(tiny_checkpoint, n_per_class=1, intensity="zscore", device="cpu")


def test_synthetic_dataset_is_deterministic_by_index(tiny_checkpoint: Path) -> None:
    a = SyntheticDataset(tiny_checkpoint, n_per_class=5, batch_size=4, device="cpu")
    b = SyntheticDataset(tiny_checkpoint, n_per_class=5, batch_size=4, device="cpu")
    forward = [a[i]["image"] for i in range(len(a))]
    backward = [b[i]["image"] for i in reversed(range(len(b)))][::-1]
    for x, y in zip(forward, backward, strict=True):
        assert torch.equal(x.as_tensor(), y.as_tensor())
    assert not torch.equal(forward[0].as_tensor(), forward[1].as_tensor())


def test_synthetic_dataset_labels_and_bad_input(tiny_checkpoint: Path) -> None:
    classes = CGANSynthesizer(tiny_checkpoint).classes
    ds = SyntheticDataset(tiny_checkpoint, labels=[classes[1], 0, 1], device="cpu")
    assert ds.labels.tolist() == [1, 0, 1]
    assert ds.seeds.tolist() == [derive_seed(0, 1, 0), derive_seed(0, 0, 0), derive_seed(0, 1, 1)]
    per = SyntheticDataset(tiny_checkpoint, n_per_class={1: 2}, device="cpu")
    assert per.labels.tolist() == [1, 1]
    with pytest.raises(InputError, match="exactly one"):
        SyntheticDataset(tiny_checkpoint, device="cpu")
    with pytest.raises(InputError, match="not in the checkpoint's classes"):
        SyntheticDataset(tiny_checkpoint, labels=["no such class"], device="cpu")


@pytest.mark.parametrize(
    ("policy", "ratio", "real", "synthetic"),
    [
        ("add", 0.5, {0: 8, 1: 4}, {0: 4, 1: 2}),
        ("balance", 1.0, {0: 8, 1: 4}, {1: 4}),
        ("replace", 0.25, {0: 6, 1: 3}, {0: 2, 1: 1}),
    ],
)
def test_mixed_dataset_over_a_monai_dataset(
    tiny_checkpoint: Path, png_files: list[dict], policy: str, ratio: float, real: dict, synthetic: dict
) -> None:
    real_ds = CacheDataset(png_files, REAL_TF, progress=False)
    syn = SyntheticDataset(tiny_checkpoint, n_per_class=10, device="cpu")
    mix = MixedDataset(real_ds, syn, ratio=ratio, policy=policy, synthetic_weight=0.5, seed=1)
    counts = mix.class_counts()
    assert counts["real"] == real and counts["synthetic"] == synthetic
    batches = list(DataLoader(mix, batch_size=5, shuffle=True))
    flags = torch.cat([b["synthetic"] for b in batches])
    weights = torch.cat([b["weight"] for b in batches])
    assert int(flags.sum()) == sum(synthetic.values()) and len(flags) == len(mix)
    assert torch.all(weights[flags] == 0.5) and torch.all(weights[~flags] == 1.0)
    for b in batches:  # real and synthetic slices share the intensity convention (ScaleIntensityd -> [0, 1])
        assert b["image"].shape[1:] == (1, 16, 16)
        assert float(b["image"].min()) >= 0.0 and float(b["image"].max()) <= 1.0
    # the same seed gives the same mixture
    again = MixedDataset(real_ds, syn, ratio=ratio, policy=policy, synthetic_weight=0.5, seed=1)
    assert np.array_equal(again.source_index, mix.source_index)


def test_rand_synthetic_replaced_inside_compose(tiny_checkpoint: Path, png_files: list[dict]) -> None:
    synth = CGANSynthesizer(tiny_checkpoint)

    def pipeline(prob: float, seed: int) -> list[dict]:
        tf = Compose([*REAL_TF.transforms, RandSyntheticReplaced("image", synth, prob=prob)])
        tf.set_random_state(seed)
        return [tf(dict(f)) for f in png_files]

    none = pipeline(0.0, 0)
    assert not any(d["synthetic"] for d in none)
    every = pipeline(1.0, 0)
    assert all(d["synthetic"] for d in every)
    for d in every:  # a synthetic slice of the sample's own label, from the drawn seed
        seed = d["image"].meta["seed"]
        ref = synth.generate([d["label"]], [seed])[0]
        ref = ((ref - ref.min()) / (ref.max() - ref.min())).transpose(
            -1, -2
        )  # as ScaleIntensityd, MONAI order
        torch.testing.assert_close(d["image"].as_tensor(), ref)
    half_a, half_b = pipeline(0.5, 3), pipeline(0.5, 3)
    assert [d["synthetic"] for d in half_a] == [d["synthetic"] for d in half_b]
    assert 0 < sum(d["synthetic"] for d in half_a) < len(half_a)
    for x, y in zip(half_a, half_b, strict=True):
        assert torch.equal(torch.as_tensor(x["image"]), torch.as_tensor(y["image"]))
    with pytest.raises(InputError, match="prob"):
        RandSyntheticReplaced("image", synth, prob=1.5)


def test_supervised_trainer_trains_on_a_mixed_dataset(tiny_checkpoint: Path, png_files: list[dict]) -> None:
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    real_ds = Dataset(png_files, REAL_TF)
    mix = MixedDataset(real_ds, SyntheticDataset(tiny_checkpoint, n_per_class=8, device="cpu"), ratio=1.0)
    net = DenseNet(2, 1, 2, init_features=8, growth_rate=8, block_config=(2, 2))
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=DataLoader(mix, batch_size=8, shuffle=True),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-3),
        loss_function=torch.nn.CrossEntropyLoss(),
        prepare_batch=lambda b, device, non_blocking, **_: (b["image"].to(device), b["label"].to(device)),
        iteration_update=None,
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"]))
    )
    trainer.run()
    assert len(losses) == 3 and all(np.isfinite(losses))


def test_mixed_dataset_generates_only_the_selected_synthetic_slices(
    tiny_checkpoint: Path, png_files: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    syn = SyntheticDataset(tiny_checkpoint, n_per_class=1000, batch_size=4, device="cpu")
    made: list[int] = []
    original = syn.synth.generate

    def counting(labels, seeds, *a, **k):
        made.append(len(labels))
        return original(labels, seeds, *a, **k)

    monkeypatch.setattr(syn.synth, "generate", counting)
    mix = MixedDataset(Dataset(png_files, REAL_TF), syn, ratio=0.5, seed=0)
    assert mix.n_synthetic == 6
    for i in np.random.default_rng(0).permutation(len(mix)):  # shuffled access, as a DataLoader does
        mix[int(i)]
    assert sum(made) == 6  # two batches of 4 and 2, each generated once; not 2,000 slices


def test_a_diffusion_checkpoint_plugs_in_the_same_way(
    tiny_diffusion_checkpoint: Path, png_files: list[dict]
) -> None:
    """SyntheticDataset and RandSyntheticReplaced take any sampler: a diffusion checkpoint gives items in
    MONAI's orientation, the images its sampler gives for the same (label, seed)."""
    from medgan.synthesis import registry

    ds = SyntheticDataset(
        tiny_diffusion_checkpoint,
        n_per_class=2,
        seed=3,
        intensity="fixed",
        value_range=(-1.0, 1.0),
        device="cpu",
    )
    ref = registry.load_sampler(tiny_diffusion_checkpoint).generate(ds.labels.tolist(), ds.seeds.tolist())
    for i in range(len(ds)):
        torch.testing.assert_close(ds[i]["image"].as_tensor(), ref[i].transpose(-1, -2))
    swap = RandSyntheticReplaced("image", tiny_diffusion_checkpoint, prob=1.0)
    swap.set_random_state(0)
    item = swap(REAL_TF(png_files[0]))
    assert item["synthetic"] is True and item["image"].shape == (1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_per_class": 2.5}, r"n_per_class: must be a whole number of images \(got 2\.5\)"),
        ({"n_per_class": True}, r"n_per_class: must be a whole number"),
        ({"n_per_class": {0: 1.5}}, r"n_per_class\[0\]: must be a whole number"),
        ({"n_per_class": {True: 2}}, r"n_per_class: True is not a class name or index"),
        ({"labels": [0, True]}, r"labels\[1\]: True is not a class name or index"),
        ({"labels": [0, 1.0]}, r"labels\[1\]: 1\.0 is not a class name or index"),
        ({"n_per_class": 1, "value_range": (0.0, float("inf"))}, r"value_range: must be two finite numbers"),
        ({"n_per_class": 1, "value_range": (0.0, float("nan"))}, r"value_range: must be two finite numbers"),
        ({"n_per_class": 1, "seed": 1.5}, r"seed: must be a whole number"),
    ],
)
def test_synthetic_dataset_refuses_values_that_cannot_mean_what_they_say(
    tiny_checkpoint: Path, kwargs: dict, match: str
) -> None:
    """Fractional or boolean counts, boolean or float labels and infinite ranges (NaN images) are refused."""
    with pytest.raises(InputError, match=match):
        SyntheticDataset(tiny_checkpoint, device="cpu", **kwargs)


def test_a_huge_synthetic_pool_is_lazy(tiny_checkpoint: Path) -> None:
    """A pool of 10**12 images per class costs nothing until an item is read; item i is the same
    image as in a small pool (the plan is class-major, so the first items agree)."""
    # an eager plan of 2 * 10**12 items would never finish (or fit): constructing it is the test
    huge = SyntheticDataset(tiny_checkpoint, n_per_class=10**12, batch_size=4, device="cpu")
    assert len(huge) == 2 * 10**12
    small = SyntheticDataset(tiny_checkpoint, n_per_class=3, batch_size=4, device="cpu")
    assert torch.equal(huge[1]["image"].as_tensor(), small[1]["image"].as_tensor())
    last = huge[len(huge) - 1]
    assert last["label"] == 1 and last["seed"] == derive_seed(0, 1, 10**12 - 1)
    mixed = MixedDataset((np.zeros((4, 1, 16, 16), np.float32), np.array([0, 1, 0, 1])), huge, ratio=1.0)
    assert mixed.n_synthetic == 4 and mixed.class_counts()["synthetic"] == {0: 2, 1: 2}
    sub = huge.subset([0, 10**12])
    assert sub.labels.tolist() == [0, 1] and sub.seeds.tolist() == [
        derive_seed(0, 0, 0),
        derive_seed(0, 1, 0),
    ]


def test_mixing_and_replacement_refuse_labels_and_weights_that_cannot_mean_what_they_say(
    tiny_checkpoint: Path,
) -> None:
    """NaN ratios and weights, fractional or boolean labels, and one-hot labels of the wrong length
    are one-line errors (not a traceback, not a silently truncated class)."""
    from medgan.errors import ConfigError

    x = np.zeros((4, 1, 16, 16), np.float32)
    y = np.array([0, 1, 0, 1])
    syn = (x.copy(), y.copy())
    for kw, match in (
        ({"ratio": float("nan")}, r"ratio: must be a finite number"),
        ({"synthetic_weight": float("nan")}, r"synthetic_weight: must be a finite number"),
        ({"ratio": True}, r"ratio: must be a finite number"),
    ):
        with pytest.raises(ConfigError, match=match):
            MixedDataset((x, y), syn, **kw)
    with pytest.raises(InputError, match=r"real: labels must be whole class indices"):
        MixedDataset((x, np.array([0.0, 0.5, 1.0, 1.0])), syn)
    with pytest.raises(InputError, match=r"real item 1: label True is not a class index"):
        MixedDataset([{"image": x[0], "label": 0}, {"image": x[1], "label": True}], None)
    t = RandSyntheticReplaced("image", tiny_checkpoint, prob=1.0)
    sample = {"image": torch.zeros(1, 16, 16), "label": torch.tensor([0.0, 1.0, 0.0])}
    with pytest.raises(InputError, match=r"label: a one-hot label of length 3 for 2 classes"):
        t(sample)
    with pytest.raises(InputError, match=r"label: label 0\.5 is not a whole class index"):
        t({"image": torch.zeros(1, 16, 16), "label": 0.5})
    with pytest.raises(InputError, match=r"prob: must be in \[0, 1\]"):
        RandSyntheticReplaced("image", tiny_checkpoint, prob=float("nan"))
