"""The visual-pivoting captioner: it learns captions, feedback propagation moves only the pivot,
batches decode like single samples, the encoder split is exact, configs fail on one line, and
torchvision-layout ResNet weights load into its encoder."""

from __future__ import annotations

import pytest
import torch

from dist_train.models.captioner import PivotCaptioner, PivotCaptionerConfig, pivot_layer_names
from dist_train.models.registry import build_model
from dist_train.models.resnet import load_resnet_weights, resnet

VOCAB = 16
PAD, BOS, EOS = 0, 1, 2
TINY = dict(languages=["en", "de"], vocab_sizes=[VOCAB, VOCAB], image_arch="spatial_cnn", pivot_layer="stage2",
            attention_dim=32, embed_dim=32, decoder_dim=32, dropout=0.1)


def tiny(**kw) -> PivotCaptioner:
    torch.manual_seed(0)
    return PivotCaptioner(PivotCaptionerConfig(**{**TINY, **kw}))


def random_captions(n: int, gen: torch.Generator, max_words: int = 6) -> torch.Tensor:
    """BOS, 3..max_words random words, EOS, right-padded."""
    out = torch.full((n, max_words + 2), PAD)
    for i in range(n):
        words = int(torch.randint(3, max_words + 1, (1,), generator=gen))
        out[i, 0] = BOS
        out[i, 1:words + 1] = torch.randint(3, VOCAB, (words,), generator=gen)
        out[i, words + 1] = EOS
    return out


def words(captions: torch.Tensor) -> list[list[int]]:
    return [[t for t in row if t not in (PAD, BOS, EOS)] for row in captions.tolist()]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Ops this small only lose to a second thread, and badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """4 images with a different random caption per language, overfitted end to end."""
    model = tiny()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 32, 32, generator=gen)
    captions = {"en": random_captions(4, gen), "de": random_captions(4, gen)}
    assert words(captions["en"]) != words(captions["de"])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    # Training mode (dropout on), the encoder's BatchNorm statistics frozen so eval mode sees
    # the features training saw; the encoder's weights still learn.
    model.train()
    model.encoder.eval()
    for _ in range(150):
        loss = model(images, captions)  # both languages, the images encoded once
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)  # so a test can tell that feedback propagation sets no .grad
    return model, images, captions


def snapshot(model: PivotCaptioner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def modes(model: PivotCaptioner) -> list[bool]:
    return [m.training for m in model.modules()]


def test_overfits_and_decoding_reproduces_every_caption(trained):
    model, images, captions = trained
    model.eval()
    with torch.no_grad():
        features = model.encode(images)
        for lang, tokens in captions.items():
            assert model.caption_loss(features, tokens, lang, attention_regularisation=0.0) < 0.05
            for beam in (1, 3):
                hyp = model.generate(features, lang, beam_size=beam)
                assert hyp.tokens == words(tokens), (lang, beam)
                assert hyp.scores.shape == (4,) and bool((hyp.scores > -0.1).all())


def test_feedback_propagation_fits_the_given_caption_and_moves_only_the_pivot(trained):
    model, images, captions = trained
    model.train()
    model.encoder.eval()
    before_modes = modes(model)
    before = snapshot(model)
    given = [("en", captions["en"])]
    with torch.no_grad():
        model.eval()
        z0 = model.encode_pivot(images.roll(1, dims=0))  # every sample starts from another image
        start = model.generate(model.features_from_pivot(z0), "en").tokens
        energy0 = model.pivot_energy(z0, given)
    model.train()
    model.encoder.eval()
    assert start == words(captions["en"].roll(1, dims=0)) != words(captions["en"])
    z = model.feedback_propagation(z0, given, steps=40, lr=0.05)
    assert not z.requires_grad and z.shape == z0.shape
    with torch.no_grad():
        energy = model.pivot_energy(z, given)
        features = model.features_from_pivot(z)
    assert bool((energy < 0.5 * energy0).all()), (energy0, energy)
    assert model.generate(features, "en").tokens == words(captions["en"])
    # The weights did not move, got no gradient, and every module is back in its own mode.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert modes(model) == before_modes and model.training and not model.encoder.training
    # The pivot fitted to the English caption decodes its image's German caption: translation.
    assert model.generate(features, "de").tokens == words(captions["de"])


def test_translation_from_noise(trained):
    model, _, captions = trained
    z0 = model.noise_pivot(4, 32, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], generator=torch.Generator().manual_seed(1))
    assert z0.shape == (4, 64, 8, 8)
    given = [("en", captions["en"])]
    with torch.no_grad():
        energy0 = model.pivot_energy(z0, given)
    hyp = model.translate(captions["en"], "en", "de", z0, steps=40, lr=0.05)
    with torch.no_grad():
        energy = model.pivot_energy(model.feedback_propagation(z0, given, steps=40, lr=0.05), given)
    assert bool((energy < energy0).all())
    assert hyp.tokens == words(captions["de"])


@pytest.mark.parametrize(("optimizer", "lr", "steps"), [("adam", 0.05, 20), ("sgd", 0.5, 10)])
def test_batched_feedback_propagation_equals_each_sample_alone(trained, optimizer, lr, steps):
    model, images, captions = trained
    with torch.no_grad():
        z0 = model.eval().encode_pivot(images.flip(0))
    given = [("en", captions["en"]), (1, captions["de"])]  # two support languages, by code and index
    # Called in training mode: it must switch to eval itself (no dropout, no batch statistics),
    # or the batch would not give what each sample gives alone (in eval mode) below.
    model.train()
    batched = model.feedback_propagation(z0, given, steps=steps, lr=lr, optimizer=optimizer)
    assert all(modes(model))
    model.eval()
    assert not torch.allclose(batched, z0, atol=1e-3)
    with torch.no_grad():
        decoded = model.generate(model.features_from_pivot(batched), "en", beam_size=3).tokens
    for i in range(4):
        alone = model.feedback_propagation(z0[i:i + 1], [(lang, t[i:i + 1]) for lang, t in given], steps=steps,
                                           lr=lr, optimizer=optimizer)
        torch.testing.assert_close(alone[0], batched[i], rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            assert model.generate(model.features_from_pivot(alone), "en", beam_size=3).tokens == [decoded[i]]


def test_per_sample_loss_is_each_sample_alone_and_padding_free(trained):
    model, images, captions = trained
    model.eval()
    with torch.no_grad():
        features = model.encode(images)
        tokens = captions["de"]
        per_sample = model.caption_loss(features, tokens, "de", reduction="none")
        padded = torch.cat([tokens, torch.full((4, 5), PAD)], dim=1)
        torch.testing.assert_close(model.caption_loss(features, padded, "de", reduction="none"), per_sample)
        for i in range(4):
            alone = model.caption_loss(features[i:i + 1], tokens[i:i + 1], "de", reduction="none")
            torch.testing.assert_close(alone, per_sample[i:i + 1], rtol=1e-5, atol=1e-6)
        # forward is caption_loss of the encoded images; with a mapping, the sum over languages.
        torch.testing.assert_close(model(images, tokens, "de"), model.caption_loss(features, tokens, 1))
        both = model.caption_loss(features, captions["en"], 0) + model.caption_loss(features, tokens, 1)
        torch.testing.assert_close(model(images, captions), both)
        other = model.caption_loss(features, captions["en"], "de", reduction="none")
        assert bool((other > per_sample + 1.0).all())  # the other language's captions are unlikely


def test_loss_is_a_teacher_forced_decode(trained):
    model, images, captions = trained
    model.eval()
    decoder = model.decoder("en")
    tokens = captions["en"]
    with torch.no_grad():
        features = model.encode(images)
        h, c, projected = decoder.start(features)
        nll, alphas = [], []
        for t in range(tokens.shape[1] - 1):
            logits, h, c, alpha = decoder.step(tokens[:, t], h, c, features, projected)
            nll.append(-logits.log_softmax(-1).gather(1, tokens[:, t + 1:t + 2])[:, 0])
            alphas.append(alpha)
        real = (tokens[:, 1:] != PAD).float()
        nll_bt = torch.stack(nll, 1) * real
        penalty = ((1 - (torch.stack(alphas, 1) * real[..., None]).sum(1)) ** 2).mean(1)
        per_sample = nll_bt.sum(1) / real.sum(1)
        for weight in (0.0, 1.0, 3.0):
            torch.testing.assert_close(
                model.caption_loss(features, tokens, "en", reduction="none", attention_regularisation=weight),
                per_sample + weight * penalty)
        torch.testing.assert_close(model.caption_loss(features, tokens, "en"),
                                   nll_bt.sum() / real.sum() + model.config.attention_regularisation * penalty.mean())


def test_generation_never_emits_pad_or_bos():
    model = tiny().eval()
    with torch.no_grad():
        model.decoder("de").output.bias[PAD] = 20.0
        model.decoder("de").output.bias[BOS] = 19.0
        features = model.encode(torch.randn(3, 3, 32, 32))
        for beam in (1, 4):
            hyp = model.generate(features, "de", beam_size=beam, max_len=7)
            assert all(len(t) == 7 and PAD not in t and BOS not in t for t in hyp.tokens), hyp.tokens


def test_noise_pivot_is_the_pivot_of_a_noise_image():
    model = tiny()
    model.train()
    mean, std = [0.5, -0.2, 0.1], [0.3, 1.5, 0.0]
    z = model.noise_pivot(2, (32, 48), mean, std, generator=torch.Generator().manual_seed(7))
    assert model.training and z.shape == (2, 64, 8, 12)
    noise = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(7))
    image = noise * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(z, model.eval().encode_pivot(image))


def test_pivot_split_is_exact_for_spatial_cnn():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for layer in pivot_layer_names("spatial_cnn"):
        model = tiny(pivot_layer=layer).eval()
        with torch.no_grad():
            direct = model.encoder.features(x)
            split = model.features_from_pivot(model.encode_pivot(x))
            assert torch.equal(split, direct.flatten(2).transpose(1, 2)), layer
            # At 64 px the grid pool is the identity: the encoder's own features, reordered.
            assert torch.equal(split.transpose(1, 2).flatten(1), model.encoder.forward_features(x))
    assert tiny(pivot_layer="stage1").encode_pivot(x).shape == (2, 32, 32, 32)


@pytest.mark.parametrize("layer", ["maxpool", "layer2", "layer3.0", "layer4"])
def test_pivot_split_is_exact_for_resnet18(layer):
    model = tiny(image_arch="resnet18", pivot_layer=layer).eval()
    enc = model.encoder
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        direct = enc.layer4(enc.layer3(enc.layer2(enc.layer1(enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))))))
        split = model.features_from_pivot(model.encode_pivot(x))
        assert split.shape == (2, 4, 512)
        assert torch.equal(split, direct.flatten(2).transpose(1, 2))
        torch.testing.assert_close(split.mean(1), enc.forward_features(x))
    expected = {"maxpool": (64, 16, 16), "layer2": (128, 8, 8), "layer3.0": (256, 4, 4), "layer4": (512, 2, 2)}
    assert model.encode_pivot(x).shape[1:] == expected[layer]


def test_resnet_weights_load_into_the_encoder(tmp_path):
    torch.manual_seed(5)
    src = resnet("resnet18")
    with torch.no_grad():
        for name, t in src.state_dict().items():
            if "running" in name:
                t.copy_(torch.rand_like(t) * 0.5 + 0.75)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    model = tiny(image_arch="resnet18", pivot_layer="layer3")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model.eval().encode(x).mean(1), src.eval().forward_features(x))
        assert load_resnet_weights(model.encoder, path) is model.encoder
        own = model.encoder.state_dict()
        assert all(torch.equal(v, own[k]) for k, v in src.state_dict().items() if not k.startswith("fc."))
        torch.testing.assert_close(model.encode(x).mean(1), src.forward_features(x))
    # The classifier is never run: one output, frozen, so DDP finds no unused trainable weight.
    assert model.encoder.fc.weight.shape == (1, 512) and not model.encoder.fc.weight.requires_grad


def test_pivot_layer_names():
    assert pivot_layer_names("spatial_cnn") == ["stage1", "stage2", "stage3", "stage4"]
    names = pivot_layer_names("resnet50")
    assert names[:4] == ["conv1", "maxpool", "layer1.0", "layer1.1"]
    assert {"layer1", "layer2", "layer3", "layer4", "layer3.5", "layer4.2"} <= set(names) and "layer3.6" not in names
    assert PivotCaptionerConfig(languages=["en"], vocab_sizes=[10]).pivot_layer == "layer3"  # the paper's Conv-40


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"image_arch": "vgg16"}, "image_arch"),
        ({"image_arch": "resnet50", "pivot_layer": "layer5"}, "pivot_layer"),
        ({"pivot_layer": "layer3"}, "pivot_layer"),  # a ResNet name on spatial_cnn
        ({"image_arch": "resnet18", "pivot_layer": "layer1.2"}, "pivot_layer"),
        ({"languages": [], "vocab_sizes": []}, "languages"),
        ({"languages": "en"}, "languages"),
        ({"languages": ["en", "en"]}, "languages"),
        ({"vocab_sizes": [VOCAB]}, "vocab_sizes"),
        ({"vocab_sizes": [VOCAB, 0]}, "vocab_sizes"),
        ({"attention_dim": 0}, "attention_dim"),
        ({"embed_dim": -1}, "embed_dim"),
        ({"decoder_dim": 2.5}, "decoder_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"attention_regularisation": -1.0}, "attention_regularisation"),
        ({"bos_id": 0}, "pad_id"),
        ({"eos_id": VOCAB}, "eos_id"),
        ({"max_caption_len": 0}, "max_caption_len"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(overrides, key):
    with pytest.raises(ValueError) as err:
        PivotCaptionerConfig(**{**TINY, **overrides})
    message = str(err.value)
    assert key in message and "\n" not in message, message


def test_registered_and_built_from_a_mapping():
    model = build_model("pivot", {**TINY, "languages": ["en", "de", "ja"], "vocab_sizes": [16, 16, 20]})
    assert isinstance(model, PivotCaptioner) and len(model.decoders) == 3
    assert model.decoder("ja").output.out_features == 20 and model.decoder(2) is model.decoder("ja")
    with pytest.raises(ValueError, match="unknown pivot config key"):
        build_model("pivot", {**TINY, "pivot": "stage2"})
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        model.decoder("fr")
    with pytest.raises(ValueError, match="index below 3"):
        model.decoder(3)
