"""The Globetrotter objective's settings: bad ones fail naming the key; augmentation settings reach the step."""

from __future__ import annotations

import pytest
import torch

from dist_train.config import ConfigError
from dist_train.models.augment import normalize
from dist_train.train.config import TrainConfig
from dist_train.train.data import Vocab
from dist_train.train.objectives.globetrotter import GlobetrotterObjective, _objective_config

VOCAB = Vocab(path="unused", size=40, pad_id=0, bos_id=2, eos_id=3, mask_id=4)
TINY_MODEL = {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "embed_dim": 8}


@pytest.mark.parametrize("raw, key", [
    ({"augment": {"hue_shift": 0.1}}, "objective.augment.hue_shift"),
    ({"augment": {"hue": 0.9}}, "objective.augment"),
    ({"augment": {"crop_scale": [0.9, 0.5]}}, "objective.augment"),
    ({"transitive_normalise": "rows"}, "objective.transitive_normalise"),
    ({"alpha_form": "cube"}, "objective.alpha_form"),
    ({"alpha_image": "text"}, "objective.alpha_image"),
    ({"visaul": 0.0}, "objective.visaul"),
])
def test_bad_objective_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _objective_config(raw)


class _Recorder(torch.nn.Module):
    """Stands where the DeepSpeed engine stands: calls the model and keeps the images it was given."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.images: torch.Tensor | None = None

    def forward(self, **inputs):
        self.images = inputs.get("images")
        return self.model(**inputs)


def _step_images(augment: dict) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = TrainConfig(out_dir="unused", model_config=dict(TINY_MODEL), objective={"augment": augment})
    cfg.data.image_size = 32
    objective = GlobetrotterObjective(cfg, VOCAB)
    torch.manual_seed(0)
    engine = _Recorder(objective.build_model())
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    batch = {"tokens": torch.randint(5, VOCAB.size, (6, 7)), "images": pixels,
             "groups": torch.arange(6), "keys": [str(i) for i in range(6)]}
    loss, metrics = objective.loss(engine, batch, torch.Generator().manual_seed(1), torch.device("cpu"), 0)
    assert torch.isfinite(loss) and {"cross_modal", "visual", "transitive", "cloze"} <= metrics.keys()
    return engine.images, normalize(pixels.float() / 255)


def test_identity_augmentation_feeds_the_plain_images_as_both_views():
    identity = {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip_p": 0.0, "jitter_p": 0.0,
                "grayscale_p": 0.0, "blur_p": 0.0}
    images, plain = _step_images(identity)
    assert images.shape == (12, 3, 32, 32)
    torch.testing.assert_close(images[:6], plain, atol=1e-4, rtol=0)
    torch.testing.assert_close(images[6:], plain, atol=1e-4, rtol=0)


def test_default_augmentation_changes_the_views():
    images, plain = _step_images({})
    assert (images[:6] - plain).abs().mean() > 0.05
    assert (images[:6] - images[6:]).abs().mean() > 0.05


class _TokenRecorder(_Recorder):
    def __init__(self, model: torch.nn.Module):
        super().__init__(model)
        self.calls: list[dict] = []

    def forward(self, **inputs):
        self.calls.append(inputs)
        return self.model(**inputs)


@pytest.mark.parametrize("objective, clean_forwards, masked_forwards", [
    ({}, 0, 1),  # the published code: one forward over the masked captions
    ({"masked_text": "cloze"}, 1, 1),  # contrastive losses on the captions as written, L_c on masked ones
    ({"cloze": 0.0}, 1, 0),  # no cloze loss: nothing is masked
])
def test_masked_text_decides_which_losses_see_masked_captions(objective, clean_forwards, masked_forwards):
    cfg = TrainConfig(out_dir="unused", model_config=dict(TINY_MODEL), objective=objective)
    cfg.data.image_size = 32
    obj = GlobetrotterObjective(cfg, VOCAB)
    torch.manual_seed(0)
    engine = _TokenRecorder(obj.build_model())
    tokens = torch.randint(5, VOCAB.size, (6, 9))
    batch = {"tokens": tokens, "images": torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
             "groups": torch.arange(6), "keys": [str(i) for i in range(6)]}
    loss, metrics = obj.loss(engine, batch, torch.Generator().manual_seed(1), torch.device("cpu"), 0)
    assert torch.isfinite(loss) and ("cloze" in metrics) == (masked_forwards == 1)
    clean = [call for call in engine.calls if torch.equal(call["tokens"], tokens)]
    masked = [call for call in engine.calls if not torch.equal(call["tokens"], tokens)]
    assert (len(clean), len(masked)) == (clean_forwards, masked_forwards)
    contrastive = clean[0] if clean else masked[0]
    assert contrastive.get("images") is not None
    if clean and masked:  # the cloze forward does not run the image network again
        assert masked[0].get("images") is None


@pytest.mark.parametrize("alpha_image", ["visual", "cross"])
def test_alpha_image_chooses_which_image_embedding_gives_alpha(alpha_image, monkeypatch):
    """alpha's image-image similarity comes from the L_v head (the paper) or the L_x head (the published code)."""
    import dist_train.train.objectives.globetrotter as module

    seen = {}
    real = module.transitive_loss

    def spy(text_emb, image_emb=None, **kw):
        seen["image"] = image_emb
        return real(text_emb, image_emb, **kw)

    monkeypatch.setattr(module, "transitive_loss", spy)
    cfg = TrainConfig(out_dir="unused", model_config=dict(TINY_MODEL), objective={"alpha_image": alpha_image})
    cfg.data.image_size = 32
    obj = GlobetrotterObjective(cfg, VOCAB)
    torch.manual_seed(0)
    model = obj.build_model()
    batch = {"tokens": torch.randint(5, VOCAB.size, (6, 7)),
             "images": torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
             "groups": torch.arange(6), "keys": [str(i) for i in range(6)]}
    inputs = obj._inputs(batch, torch.Generator().manual_seed(1), torch.device("cpu"), model)
    out = obj._forward(model, inputs)
    obj._losses(out, inputs["labels"], batch["groups"])
    expected = out["image_cross" if alpha_image == "cross" else "image_visual"][:, 0]
    assert torch.equal(seen["image"], expected)
    assert not torch.equal(out["image_cross"], out["image_visual"])  # separate heads: the choice matters
