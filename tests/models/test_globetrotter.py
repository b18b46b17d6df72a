"""The Globetrotter model: outputs, switches, weight loading, cost, and its import boundary."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dist_train.models
from dist_train.models.globetrotter import Globetrotter, GlobetrotterConfig
from dist_train.models.resnet import resnet
from dist_train.models.text_batch import IGNORE_INDEX, mask_for_cloze, pad_tokens

VOCAB = 97
TINY = dict(vocab_size=VOCAB, hidden=32, layers=2, heads=4, intermediate=64, max_length=16, embed_dim=16)


def tiny(**kw) -> Globetrotter:
    torch.manual_seed(0)
    return Globetrotter(GlobetrotterConfig(**{**TINY, **kw}))


def unit_norm(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[0]), atol=1e-5)


def test_output_shapes_and_unit_norms():
    model = tiny().eval()
    tokens = pad_tokens([[5, 6, 7], [8, 9]], max_length=16)
    with torch.no_grad():
        out = model(tokens, torch.randn(2, 3, 32, 32), cloze_positions=tokens > 4)
    for key in ("text_cross", "text_text", "image_cross", "image_visual"):
        assert out[key].shape == (2, 16), key
        assert unit_norm(out[key]), key
    assert out["hidden"].shape == (2, 5, 32)
    assert out["cloze_logits"].shape == (5, VOCAB)
    assert model.cloze_logits(out["hidden"]).shape == (2, 5, VOCAB)


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_padding_does_not_change_sentence_embeddings(pooling):
    model = tiny(text_pooling=pooling).eval()
    alone = pad_tokens([[5, 6, 7]], max_length=16)
    batch = pad_tokens([[10] * 12, [5, 6, 7]], max_length=16, pad_to_max_length=True)
    with torch.no_grad():
        a, b = model.encode_text(alone), model.encode_text(batch)
    for key in ("text_cross", "text_text"):
        assert torch.allclose(a[key][0], b[key][1], atol=1e-5), key


def test_mean_pooling_reads_the_words_and_eos_not_txt_or_pad():
    model = tiny()
    tokens = pad_tokens([[5, 6], [7]], max_length=16)
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1).expand(2, 4, 3)
    pooled = model.pool_text(hidden, tokens)
    assert pooled[:, 0].tolist() == [(1 + 2 + 3) / 3, (5 + 6) / 2]
    assert tiny(text_pooling="first").pool_text(hidden, tokens)[:, 0].tolist() == [0.0, 4.0]


def test_text_only_has_no_image_network():
    model = tiny(text_only=True)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("image_", "text_cross")) for n in names)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    out = model.encode_text(pad_tokens([[5, 6]], max_length=16))
    assert set(out) == {"text_text", "hidden"}
    with pytest.raises(RuntimeError, match="text_only"):
        model.encode_image(torch.randn(1, 3, 32, 32))
    full = tiny().parameter_counts()
    counts = model.parameter_counts()
    assert counts["total"] == full["text_encoder"] + full["text_text_head"]


def test_shared_image_head_is_the_published_forward():
    model = tiny(image_heads="shared").eval()
    assert not hasattr(model, "image_visual_head")
    with torch.no_grad():
        out = model.encode_image(torch.randn(2, 3, 32, 32))
    assert torch.equal(out["image_cross"], out["image_visual"])


def test_image_projection_replaces_the_resnet_classifier():
    model = tiny()
    assert model.image_encoder.fc.in_features == 512 and model.image_encoder.fc.out_features == 32


def test_imagenet_weights_are_loaded_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    source = resnet("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = tiny(image_weights=str(path))
    assert torch.equal(model.image_encoder.conv1.weight, source.conv1.weight)
    assert torch.equal(model.image_encoder.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.image_encoder.fc.weight.shape == (32, 512)
    with pytest.raises(FileNotFoundError):
        tiny(image_weights=str(tmp_path / "missing.pth"))


def tiny_training_step(model: Globetrotter, generator: torch.Generator) -> torch.Tensor:
    """All four losses' inputs in one forward (stand-in losses), then backward."""
    tokens = pad_tokens([[5 + i, 6 + i, 7, 8 + i] for i in range(8)], max_length=16)
    inputs, labels = mask_for_cloze(tokens, 4, VOCAB, (0, 2, 3, 4), generator)
    images = torch.randn(16, 3, 32, 32, generator=generator)  # two views of 8 images
    out = model(inputs, images, cloze_positions=labels != IGNORE_INDEX)
    view1, view2 = out["image_visual"].chunk(2)
    loss = (
        F.cross_entropy(out["text_cross"] @ out["image_cross"][:8].T / 0.1, torch.arange(8))
        + F.cross_entropy(view1 @ view2.T / 0.1, torch.arange(8))
        - (out["text_text"] @ out["text_text"].T).mean()
        + F.cross_entropy(out["cloze_logits"], labels[labels != IGNORE_INDEX])
    )
    loss.backward()
    return loss


def test_tiny_model_trains_a_step_on_cpu_quickly():
    model = tiny().train()
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded 2-core runner oversubscribes with more
    try:
        tiny_training_step(model, generator)  # first call pays one-off kernel setup
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = tiny_training_step(model, generator)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert elapsed < 3.0


def test_default_model_size():
    model = Globetrotter(GlobetrotterConfig(vocab_size=30_000))
    counts = model.parameter_counts()
    assert counts["text_encoder"] == 24_098_608
    assert counts["image_encoder"] == 11_439_168  # ResNet-18 with fc 512 -> 512
    assert counts["total"] == 36_855_152 == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_pooling": "max"}, "text_pooling"),
        ({"image_heads": "three"}, "image_heads"),
        ({"mask_id": VOCAB}, "mask_id"),
        ({"mask_id": 3}, "distinct"),
        ({"hidden": 30}, "divisible"),
        ({"image_arch": "vgg"}, "image_arch"),
        ({"text_heads": "three"}, "text_heads"),
        ({"text_only": True, "image_weights": "x.pth"}, "text_only"),
    ],
)
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        GlobetrotterConfig(**{**TINY, **change})


def test_model_code_imports_nothing_from_the_rest_of_dist_train():
    package = Path(dist_train.models.__file__).parent
    offending = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            offending += [
                f"{path.name}: {name}" for name in names
                if name.split(".")[0] == "dist_train" and not name.startswith("dist_train.models")
            ]
    assert not offending, offending


def test_shared_text_head_serves_the_cross_modal_loss_and_retrieval():
    """text_heads=shared: L_x trains the very embedding that translation retrieval reads."""
    model = tiny(text_heads="shared").eval()
    assert not hasattr(model, "text_cross_head")
    tokens = pad_tokens([[5, 6, 7], [8, 9]], max_length=16)
    with torch.no_grad():
        out = model.encode_text(tokens)
    assert torch.equal(out["text_cross"], out["text_text"])
    # a gradient through text_cross reaches the one text head
    model.train()
    model.encode_text(tokens)["text_cross"].sum().backward()
    assert model.text_text_head.project.weight.grad is not None
    separate = tiny()
    head = sum(p.numel() for p in separate.text_cross_head.parameters())
    assert model.parameter_counts()["total"] == separate.parameter_counts()["total"] - head


def test_spatial_cnn_keeps_where_things_are():
    """A square on the left and the same square on the right give different features (a 4 x 4 map)."""
    from dist_train.models.image_encoders import SpatialCNN, build_image_encoder

    torch.manual_seed(0)
    image = torch.zeros(1, 3, 64, 64)
    image[:, :, 24:40, 4:20] = 1.0  # a square on the left
    mirrored = image.flip(-1)
    cnn = SpatialCNN(num_classes=8).eval()
    with torch.no_grad():
        left, right = cnn.forward_features(image).view(128, 4, 4), cnn.forward_features(mirrored).view(128, 4, 4)
    # the map of the mirrored image is the mirrored map: the object's column is in the features
    assert left[:, :, 0].abs().sum() > 0 and not torch.allclose(left, right, atol=1e-4)
    assert cnn.feature_dim == 128 * 16 and cnn.forward_features(torch.zeros(2, 3, 128, 128)).shape == (2, 2048)
    model = tiny(image_arch="spatial_cnn").eval()
    with torch.no_grad():
        out = model.encode_image(torch.randn(2, 3, 64, 64))
    assert out["image_cross"].shape == (2, 16) and unit_norm(out["image_cross"])
    with pytest.raises(ValueError, match="spatial_cnn"):
        build_image_encoder("vgg")


def test_image_weights_of_an_earlier_run_initialise_the_spatial_cnn(tmp_path):
    from safetensors.torch import save_file

    source = tiny(image_arch="spatial_cnn")
    state = {k: v for k, v in source.image_encoder.state_dict().items()}
    save_file(state, str(tmp_path / "image_encoder.safetensors"))
    torch.manual_seed(1)
    model = Globetrotter(GlobetrotterConfig(**{**TINY, "image_arch": "spatial_cnn",
                                               "image_weights": str(tmp_path / "image_encoder.safetensors")}))
    assert torch.equal(model.image_encoder.features[0].weight, source.image_encoder.features[0].weight)
    assert torch.equal(model.image_encoder.features[1].running_mean, source.image_encoder.features[1].running_mean)
