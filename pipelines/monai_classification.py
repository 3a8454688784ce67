"""Recipe: a standard MONAI 2-D classification script, and synthetic slices added in a few lines.

    # train on any Decathlon-style datalist of 2-D images, e.g. one written by `medgan augment`
    python pipelines/monai_classification.py --datalist AUG/datalist.json [--epochs 5]

    # the same, with conditional-GAN slices mixed in on the fly (the lines marked "medgan")
    python pipelines/monai_classification.py --datalist AUG/datalist.json \
        --synthetic runs/quickstart/cgan --ratio 0.5

Everything else is plain MONAI: LoadImaged / EnsureChannelFirstd / ScaleIntensityd, a 2-D
DenseNet121 (slices resized to 64 px: its pooling collapses below 32), ``SupervisedTrainer``,
and ROC AUC on the validation list. docs/monai.md shows the medgan lines as a diff.
"""

from __future__ import annotations

import argparse
import math

import torch
from monai.data import DataLoader, Dataset, load_decathlon_datalist
from monai.engines import SupervisedTrainer
from monai.metrics import ROCAUCMetric
from monai.networks.nets import DenseNet121
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandFlipd, Resized, ScaleIntensityd

from medgan.monai import MixedDataset, SyntheticDataset  # medgan


def datasets(
    datalist: str, synthetic: str | None = None, ratio: float = 0.5, seed: int = 0, flip: bool = True
) -> tuple[Dataset, Dataset]:
    """The training set (real slices, plus synthetic ones when ``synthetic`` names a checkpoint) and
    the validation set. Real and synthetic slices reach the network in one orientation and intensity
    convention: MONAI's (``LoadImaged`` order, ``ScaleIntensityd`` range)."""
    train_files = load_decathlon_datalist(datalist, True, "training")
    val_files = load_decathlon_datalist(datalist, True, "validation")
    load = [LoadImaged("image"), EnsureChannelFirstd("image"), ScaleIntensityd("image")]
    augment = [Resized("image", (64, 64)), RandFlipd("image", prob=0.5, spatial_axis=1)]
    augment = augment if flip else augment[:1]  # (the tests compare slices without random flips)
    train_ds = Dataset(train_files, Compose(load + augment))
    if synthetic:
        pool = math.ceil(ratio * len(train_files))  # lazy: only the slices mixed in are made
        syn = SyntheticDataset(synthetic, n_per_class=pool, transform=Compose(augment))  # medgan
        train_ds = MixedDataset(train_ds, syn, ratio=ratio, seed=seed)  # medgan
    return train_ds, Dataset(val_files, Compose([*load, Resized("image", (64, 64))]))


def main(argv: list[str] | None = None) -> float:
    """Train, validate, print and return the validation AUC."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datalist", required=True, help="Decathlon-style datalist JSON (training/validation).")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-iterations", type=int, default=None, help="Iterations per epoch (default: all).")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--synthetic", default=None, help="medgan conditional-GAN checkpoint to mix in.")
    ap.add_argument("--ratio", type=float, default=0.5, help="Synthetic slices per real slice.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train_ds, val_ds = datasets(args.datalist, args.synthetic, args.ratio, args.seed)
    n_classes = len({int(f["label"]) for f in load_decathlon_datalist(args.datalist, True, "training")})

    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=n_classes).to(device)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=args.epochs,
        epoch_length=args.max_iterations,
        train_data_loader=DataLoader(
            train_ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers
        ),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-4),
        loss_function=torch.nn.CrossEntropyLoss(),
    )
    trainer.run()

    net.eval()
    auc = ROCAUCMetric()
    with torch.no_grad():
        for batch in DataLoader(val_ds, batch_size=64):
            prob = torch.softmax(net(batch["image"].to(device)), dim=1).cpu()
            target = torch.nn.functional.one_hot(batch["label"].long(), n_classes)
            auc(prob, target)
    value = float(auc.aggregate())
    print(f"trained on {len(train_ds)} slices; validation AUC {value:.3f} on {len(val_ds)} slices")
    return value


if __name__ == "__main__":
    main()
