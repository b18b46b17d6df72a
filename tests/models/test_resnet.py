"""ResNet layout must be torchvision's, so torchvision's ImageNet files load unchanged."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from dist_train.models.resnet import ResNetWeightsError, load_resnet_weights, resnet

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(bottleneck: bool, blocks: tuple[int, ...]) -> list[str]:
    """torchvision's state-dict key order, written out from its documented module names."""
    keys = ["conv1.weight", *(f"bn1.{p}" for p in BN)]
    convs = 3 if bottleneck else 2
    for stage, n in enumerate(blocks, start=1):
        for b in range(n):
            pre = f"layer{stage}.{b}"
            for c in range(1, convs + 1):
                keys += [f"{pre}.conv{c}.weight", *(f"{pre}.bn{c}.{p}" for p in BN)]
            if b == 0 and (stage > 1 or bottleneck):
                keys += [f"{pre}.downsample.0.weight", *(f"{pre}.downsample.1.{p}" for p in BN)]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize(
    ("arch", "bottleneck", "blocks", "n_keys"),
    [("resnet18", False, (2, 2, 2, 2), 122), ("resnet50", True, (3, 4, 6, 3), 320)],
)
def test_state_dict_keys_match_torchvision(arch, bottleneck, blocks, n_keys):
    sd = resnet(arch).state_dict()
    assert len(sd) == n_keys
    assert list(sd) == torchvision_keys(bottleneck, blocks)


def test_resnet18_shapes():
    sd = resnet("resnet18").state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "bn1.num_batches_tracked": (),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
        "fc.weight": (1000, 512),
        "fc.bias": (1000,),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert sum(p.numel() for p in resnet("resnet18").parameters()) == 11_689_512


def test_resnet50_shapes():
    sd = resnet("resnet50").state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv1.weight": (128, 256, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),  # v1.5: stride on the 3x3
        "layer3.5.bn3.running_mean": (1024,),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "fc.weight": (1000, 2048),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert sum(p.numel() for p in resnet("resnet50").parameters()) == 25_557_032
    assert resnet("resnet50").layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize(("arch", "dim"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_forward_features_shape(arch, dim):
    model = resnet(arch, num_classes=7).eval()
    assert model.feature_dim == dim
    with torch.inference_mode():
        x = torch.randn(2, 3, 64, 64)
        assert model.forward_features(x).shape == (2, dim)
        assert model(x).shape == (2, 7)


def test_unknown_arch():
    with pytest.raises(ValueError, match="resnet18"):
        resnet("resnet19")


def _trained_like(arch="resnet18", seed=1, num_classes=1000):
    """A model whose weights and BN statistics differ from a fresh init."""
    torch.manual_seed(seed)
    model = resnet(arch, num_classes=num_classes)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and ("running" in name or "bn" in name):
                t.copy_(torch.rand_like(t) * 0.5 + 0.75)
    return model.eval()


def _same_outputs(a, b):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("fmt", ["pth", "pt", "safetensors"])
def test_save_and_load_roundtrip(tmp_path, fmt):
    src = _trained_like()
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    torch.manual_seed(2)
    dst = resnet("resnet18")
    assert not _same_outputs(src, dst)
    assert load_resnet_weights(dst, path) is dst
    assert _same_outputs(src, dst)
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_nested_and_module_prefix(tmp_path, wrapper):
    src = _trained_like()
    path = tmp_path / "ckpt.pth"
    wrapped = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save({wrapper: wrapped, "epoch": 3, "optimizer": {"lr": 0.1}}, path)
    dst = load_resnet_weights(resnet("resnet18"), path)
    assert _same_outputs(src, dst)


def test_old_files_without_bn_counters_load(tmp_path):
    src = _trained_like()
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in src.state_dict().items() if "num_batches_tracked" not in k}, path)
    assert _same_outputs(src, load_resnet_weights(resnet("resnet18"), path))


def test_renamed_key_is_named_in_error(tmp_path):
    sd = _trained_like().state_dict()
    sd["layer3.1.bnX.weight"] = sd.pop("layer3.1.bn2.weight")
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ResNetWeightsError) as err:
        load_resnet_weights(resnet("resnet18"), path)
    assert "missing keys: layer3.1.bn2.weight" in str(err.value)
    assert "unexpected keys: layer3.1.bnX.weight" in str(err.value)


def test_wrong_arch_reports_shape_mismatch(tmp_path):
    path = tmp_path / "r18.safetensors"
    save_file(resnet("resnet18").state_dict(), str(path))
    with pytest.raises(ResNetWeightsError, match=r"layer1\.0\.conv1\.weight: file \(64, 64, 3, 3\) vs model \(64, 64, 1, 1\)"):
        load_resnet_weights(resnet("resnet50"), path)


def test_fc_of_other_size_or_missing_is_tolerated_for_features(tmp_path):
    src = _trained_like(num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    torch.save(src.state_dict(), tmp_path / "fc10.pth")
    torch.save({k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}, tmp_path / "nofc.pth")
    for name in ("fc10.pth", "nofc.pth"):
        dst = resnet("resnet18")
        fc_before = dst.fc.weight.detach().clone()
        load_resnet_weights(dst, tmp_path / name)
        assert torch.equal(dst.fc.weight, fc_before)  # keeps its own classifier
        with torch.inference_mode():
            assert torch.equal(dst.eval().forward_features(x), src.forward_features(x))
    with pytest.raises(ResNetWeightsError, match=r"fc\.weight: file \(10, 512\) vs model \(1000, 512\)"):
        load_resnet_weights(resnet("resnet18"), tmp_path / "fc10.pth", require_fc=True)
    with pytest.raises(ResNetWeightsError, match=r"missing keys: fc\.weight, fc\.bias"):
        load_resnet_weights(resnet("resnet18"), tmp_path / "nofc.pth", require_fc=True)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet18.pth"):
        load_resnet_weights(resnet("resnet18"), path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ResNetWeightsError, match="expected a state dict"):
        load_resnet_weights(resnet("resnet18"), path)
