"""Face-recognition backbones: image batch (B, C, H, W) -> embedding (B, d), not normalised.

Re-implemented from the papers' descriptions (methods.md §11), no code or
weights copied or downloaded:

- ``small-cnn``: three conv-BN-ReLU-maxpool blocks (32, 64, 128 channels),
  a 2×2 adaptive average pool and a linear embedding; ≈ 0.16M parameters at
  d = 128. Trains in seconds on 32×32 grey images on a CPU. It has no
  BatchNorm on the embedding, so it also trains with batch size 1 (the
  gradient-inversion audit uses tiny batches).
- ``mobilefacenet``: Chen et al. 2018 ("MobileFaceNets"): a stride-2 3×3
  conv, a depthwise 3×3 conv, five stages of inverted-residual bottlenecks
  (expansion t, channels c, repeats n, stride s = (2,64,5,2), (4,128,1,2),
  (2,128,6,1), (4,128,1,2), (2,128,2,1)), a 1×1 conv to 512, the *global
  depthwise convolution* (GDC: a depthwise conv whose kernel covers the
  whole final feature map) and a linear 1×1 conv to d, with BatchNorm and
  PReLU as in the paper. ≈ 1.0M parameters at d = 128 and 112×112.
- ``iresnet18`` / ``iresnet50``: the ArcFace "improved ResNet" (Deng et al.
  2019; insightface's IResNet layout): a stride-1 3×3 stem (64 ch, BN,
  PReLU); four stages of 64/128/256/512 channels with [2,2,2,2] or
  [3,4,14,3] blocks; each block is BN → conv3×3 → BN → PReLU → conv3×3 → BN
  plus a shortcut (1×1 conv + BN when the shape changes); the first block of
  each stage halves the resolution, with the stride in its second 3×3 conv
  as in insightface; then the "BN-Dropout-FC-BN" embedding head.
  ≈ 24.0M (r18) and ≈ 43.6M (r50) parameters at d = 512 and 112×112.

``image_size`` is the input side (square) or ``(height, width)``.
MobileFaceNet and IResNet downsample by 16 (each stride-2 3×3 conv with
padding 1 maps n to ⌈n/2⌉), so the final map has sides ⌈H/16⌉ × ⌈W/16⌉: 7×7
at 112×112 (the standard size), 4×4 at 64, 2×2 at 32. The GDC kernel and the
IResNet flatten size are computed from it, which is why smaller (and
non-square, e.g. FedFace's 112×96) inputs work; those two networks then need
inputs of exactly that size. ``small-cnn`` pools adaptively and takes any
size ≥ 8.
"""

from __future__ import annotations

import torch
from torch import nn

BACKBONES: tuple[str, ...] = ("small-cnn", "mobilefacenet", "iresnet18", "iresnet50")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _down16(size: int | tuple[int, int]) -> tuple[int, int]:
    """Sides of the final map after four stride-2, padding-1, 3×3 convs."""
    height, width = _pair(size)
    for _ in range(4):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


# --------------------------------------------------------------------------- small CNN


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool blocks and a linear embedding (for CPU tests and demos)."""

    def __init__(self, *, embedding_dim: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in (32, 64, 128):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.embedding = nn.Linear(channels * 4, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.embedding(torch.flatten(self.pool(self.features(x)), 1))
        return out


# --------------------------------------------------------------------------- MobileFaceNet


class _ConvBN(nn.Sequential):
    """Conv → BN (→ PReLU unless ``linear``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        *,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        linear: bool = False,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if not linear:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


class _Bottleneck(nn.Module):
    """MobileNetV2 inverted residual: 1×1 expand, 3×3 depthwise, linear 1×1 project."""

    def __init__(self, cin: int, cout: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            _ConvBN(cin, hidden, 1),
            _ConvBN(hidden, hidden, 3, stride=stride, padding=1, groups=hidden),
            _ConvBN(hidden, cout, 1, linear=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return x + out if self.residual else out


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al. 2018) with a GDC sized from ``image_size``."""

    #: (expansion t, output channels c, repeats n, first stride s), Table 1 of the paper.
    SETTINGS: tuple[tuple[int, int, int, int], ...] = (
        (2, 64, 5, 2),
        (4, 128, 1, 2),
        (2, 128, 6, 1),
        (4, 128, 1, 2),
        (2, 128, 2, 1),
    )

    def __init__(
        self, *, embedding_dim: int, in_channels: int, image_size: int | tuple[int, int]
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _ConvBN(in_channels, 64, 3, stride=2, padding=1),
            _ConvBN(64, 64, 3, padding=1, groups=64),
        )
        blocks: list[nn.Module] = []
        cin = 64
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                blocks.append(_Bottleneck(cin, c, stride=s if i == 0 else 1, expansion=t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv_expand = _ConvBN(cin, 512, 1)
        self.final_map = _down16(image_size)
        self.gdc = _ConvBN(512, 512, self.final_map, groups=512, linear=True)
        self.embedding = nn.Conv2d(512, embedding_dim, 1, bias=False)
        self.embedding_bn = nn.BatchNorm2d(embedding_dim)
        _init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_expand(self.blocks(self.stem(x)))
        if tuple(x.shape[-2:]) != self.final_map:
            # A larger input would silently give a spatial map instead of one vector.
            raise ValueError(
                f"input size does not match this MobileFaceNet: final map "
                f"{tuple(x.shape[-2:])}, built for {self.final_map} (the GDC kernel)"
            )
        x = self.embedding_bn(self.embedding(self.gdc(x)))
        return torch.flatten(x, 1)


# --------------------------------------------------------------------------- IResNet


class _IBasicBlock(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus the shortcut."""

    def __init__(self, cin: int, cout: int, *, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin, eps=1e-5),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-5),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-5),
        )
        self.shortcut: nn.Module
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x) + self.shortcut(x)
        return out


class IResNet(nn.Module):
    """ArcFace's IResNet with the BN-Dropout-FC-BN embedding head."""

    WIDTHS: tuple[int, ...] = (64, 128, 256, 512)

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        embedding_dim: int,
        in_channels: int,
        image_size: int | tuple[int, int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64, eps=1e-5),
            nn.PReLU(64),
        )
        stages: list[nn.Module] = []
        cin = 64
        for width, blocks in zip(self.WIDTHS, layers, strict=True):
            for i in range(blocks):
                stages.append(_IBasicBlock(cin, width, stride=2 if i == 0 else 1))
                cin = width
        self.stages = nn.Sequential(*stages)
        height, width = _down16(image_size)
        self.bn = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * height * width, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        _init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.stages(self.stem(x)))
        x = self.fc(self.dropout(torch.flatten(x, 1)))
        out: torch.Tensor = self.features(x)
        return out


def _init_conv_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convs, unit BN scale, zero BN shift."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- public API


def build_backbone(
    name: str,
    *,
    embedding_dim: int = 128,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 32,
) -> nn.Module:
    """The backbone ``name`` (one of :data:`BACKBONES`) for ``image_size`` inputs.

    ``image_size``: the side of square inputs, or ``(height, width)``.

    Output: the embedding (B, ``embedding_dim``), not normalised. Raises
    ``ValueError`` for an unknown name or a non-positive size.
    """
    if embedding_dim < 1 or in_channels < 1:
        raise ValueError("embedding_dim and in_channels must be positive")
    smallest = min(_pair(image_size))
    if name == "small-cnn":
        if smallest < 8:
            raise ValueError("small-cnn needs images of at least 8×8")
        return SmallCNN(embedding_dim=embedding_dim, in_channels=in_channels)
    if smallest < 16 and name in BACKBONES:
        raise ValueError(f"{name} needs images of at least 16×16")
    if name == "mobilefacenet":
        return MobileFaceNet(
            embedding_dim=embedding_dim, in_channels=in_channels, image_size=image_size
        )
    if name == "iresnet18":
        return IResNet(
            (2, 2, 2, 2),
            embedding_dim=embedding_dim,
            in_channels=in_channels,
            image_size=image_size,
        )
    if name == "iresnet50":
        return IResNet(
            (3, 4, 14, 3),
            embedding_dim=embedding_dim,
            in_channels=in_channels,
            image_size=image_size,
        )
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
