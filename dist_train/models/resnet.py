"""ResNet-18/34/50/101/152 in plain torch, with torchvision's state-dict layout.

torchvision cannot be installed beside the torch build this project pins (and pulling it in can
replace torch with a multi-GB CUDA build), yet its ImageNet weight files are what everyone has.
The modules here are named and shaped exactly like torchvision's (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, `fc`, ...; Bottleneck is the "v1.5" variant with the stride on the 3x3
convolution), so those files load with `load_resnet_weights` and no torchvision import.

Globetrotter uses ResNet-18; MULE/SMALR use pooled 2048-d ResNet-152 features (ResNet-50 has the
same width and is the cheaper stand-in).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "ARCHS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetWeightsError",
    "load_resnet_weights",
    "resnet",
]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1-projected) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4: ResNet-50 and deeper.

    The stride sits on the 3x3 convolution, as in torchvision's weights ("ResNet v1.5").
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


ARCHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7 stem, four stages, global average pool, `fc` classifier."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, int, int, int], num_classes: int = 1000):
        super().__init__()
        self.arch = next((n for n, spec in ARCHS.items() if spec == (block, tuple(layers))), "resnet")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(block, 64, layers[0], stride=1)
        self.layer2 = self._stage(block, 128, layers[1], stride=2)
        self.layer3 = self._stage(block, 256, layers[2], stride=2)
        self.layer4 = self._stage(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)
        # He init for convolutions, BN as identity: the usual ResNet starting point.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled last-stage features, `[B, feature_dim]` (what `fc` reads)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet(arch: str, num_classes: int = 1000) -> ResNet:
    """Build a randomly initialised ResNet by name ("resnet18", "resnet34", "resnet50", ...).

    Seed the torch RNG (or use `torch.random.fork_rng`) beforehand for a reproducible init.
    """
    try:
        block, layers = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown ResNet arch {arch!r}; choose one of {sorted(ARCHS)}") from None
    return ResNet(block, layers, num_classes=num_classes)


class ResNetWeightsError(ValueError):
    """A weight file that does not fit the model: names the offending keys."""


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: object = load_file(str(path), device="cpu")
    else:
        # weights_only: a weight file is data, never code to unpickle.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints wrap the weights; take the first wrapper that holds a mapping.
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ResNetWeightsError(
            f"{path}: expected a state dict of tensors (optionally under 'state_dict' or 'model'), "
            f"got {type(obj).__name__}"
        )
    state = dict(obj)
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_resnet_weights(model: ResNet, path: str | Path, require_fc: bool = False) -> ResNet:
    """Load a torchvision-layout weight file into `model` (in place) and return it.

    Accepts a `.pth`/`.pt` file holding a state dict (bare, or nested under "state_dict" or
    "model", with or without a "module." prefix on every key) or a `.safetensors` file.

    Loading is strict, with one exception: unless `require_fc` is set, the classifier `fc.*` may
    be missing from the file or have another number of classes, and the model then keeps its own
    `fc`. Feature extraction only uses `forward_features`, which never reads `fc`, so a backbone
    checkpoint or one fine-tuned for another label set is fine for features. Files from older
    torchvision releases lack the BatchNorm `num_batches_tracked` counters; torch fills those in.

    Raises FileNotFoundError for a missing file and ResNetWeightsError listing the missing,
    unexpected and wrongly shaped keys otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ResNet weight file not found: {path}")
    state = _read_state_dict(path)
    own = model.state_dict()

    def tolerated(key: str) -> bool:
        return not require_fc and key.startswith("fc.")

    # `state` is a plain dict (no `_metadata`), so BatchNorm back-fills absent counters.
    missing = [k for k in own if k not in state and not tolerated(k) and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape and not tolerated(k)
    ]
    if missing or unexpected or mismatched:
        parts = [f"{path} does not fit {model.arch}:"]
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {'; '.join(mismatched)}")
        raise ResNetWeightsError("\n  ".join(parts))
    # Only a tolerated fc can still differ in shape: leave the model's own.
    state = {k: v for k, v in state.items() if v.shape == own[k].shape}
    model.load_state_dict(state, strict=False)
    return model

