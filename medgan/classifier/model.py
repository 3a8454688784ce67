"""MONAI classifier backbones with a penultimate-feature hook (for domain-feature FID)."""

from __future__ import annotations

from typing import Literal, cast

import torch
from monai.networks.nets import DenseNet121, ResNet
from torch import nn

Arch = Literal["resnet10", "resnet18", "densenet121"]
ARCHS: tuple[str, ...] = ("resnet10", "resnet18", "densenet121")

#: DenseNet121 downsamples by 32; below this its pooling collapses to zero size.
DENSENET_MIN_PX = 32


class Classifier(nn.Module):
    """A MONAI backbone: ``forward`` gives logits ``(B, n_classes)``, ``features`` the pooled ``(B, D)``."""

    def __init__(self, backbone: ResNet | DenseNet121, arch: str, n_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.arch = arch
        self.n_classes = n_classes
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for images ``(B, C, H, W)``."""
        return cast(torch.Tensor, self.backbone(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, feature_dim)``: the globally pooled activations before the last linear."""
        net = self.backbone
        if isinstance(net, ResNet):  # ResNet.forward without its fc
            x = net.act(net.bn1(net.conv1(x)))
            if not net.no_max_pool:
                x = net.maxpool(x)
            x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
            return cast(torch.Tensor, net.avgpool(x).flatten(1))
        head = net.class_layers
        x = net.features(x)
        return cast(torch.Tensor, head.flatten(head.pool(head.relu(x))))


def build_classifier(
    arch: str, in_channels: int, n_classes: int, size: tuple[int, int], width: int = 16
) -> Classifier:
    """A fresh classifier for ``(in_channels, *size)`` images.

    ``resnet10``: compact MedMNIST-style ResNet (3x3 stride-1 stem, no max-pool, ``width`` base channels);
    ``resnet18``: the MedMNIST ResNet-18 (28) layout (64..512 channels); ``densenet121``: MONAI's
    DenseNet121, which needs inputs of at least 32 px. Raises :class:`ValueError` on a bad request.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown classifier arch {arch!r}; choose one of {list(ARCHS)}")
    if in_channels < 1 or n_classes < 2 or width < 1:
        raise ValueError(
            f"need in_channels >= 1, n_classes >= 2 and width >= 1 (got {in_channels}, {n_classes}, {width})"
        )
    if arch == "densenet121":
        if min(size) < DENSENET_MIN_PX:
            raise ValueError(
                "densenet121 needs at least 32 px input; use resnet10/resnet18 or resize (data.size: 64)"
            )
        dense = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=n_classes)
        return Classifier(dense, arch, n_classes, int(dense.class_layers.out.in_features))
    if arch == "resnet10":
        layers, planes = [1, 1, 1, 1], [width, 2 * width, 4 * width, 8 * width]
    else:
        layers, planes = [2, 2, 2, 2], [64, 128, 256, 512]
    res = ResNet(
        block="basic",
        layers=layers,
        block_inplanes=planes,
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=3,
        conv1_t_stride=1,
        no_max_pool=True,
        num_classes=n_classes,
    )
    assert res.fc is not None
    return Classifier(res, arch, n_classes, int(res.fc.in_features))
