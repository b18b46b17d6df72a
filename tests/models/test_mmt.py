"""The multimodal translator Q of adversarial visual reconstruction: it learns a tiny parallel set
and translates it back exactly, a sentence gives the same logits and h_T alone or in a padded
batch, h_T is the state at each sample's last real target, the text-only switch drops W_feat,
decoding never emits PAD/BOS, configs fail on one line, and each reconstruction form builds the
paper's submodules at the paper's sizes."""

from __future__ import annotations

import pytest
import torch

from dist_train.models.beam_search import greedy_decode
from dist_train.models.mmt import (
    ConditionalGenerator,
    FeatureCritic,
    LatentCritic,
    LatentGenerator,
    MMTConfig,
    MMTModel,
    RegressionHead,
)
from dist_train.models.registry import build_model

VOCAB = 20
PAD, BOS, EOS = 0, 1, 2
FEATURES = 24
TINY = dict(source_vocab_size=VOCAB, target_vocab_size=VOCAB, embed_dim=16, hidden_dim=32, attention_dim=32,
            bottleneck_dim=16, feature_dim=FEATURES, dropout_emb=0.1, dropout_ctx=0.1, dropout_out=0.1, noise_dim=8,
            critic_hidden_dims=[32, 16], max_len=12)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kw) -> MMTModel:
    torch.manual_seed(0)
    return MMTModel(MMTConfig(**{**TINY, **kw}))


def sentences(n: int, gen: torch.Generator, lo: int, hi: int, bos: bool) -> torch.Tensor:
    """n rows of lo..hi random words (then EOS; BOS first if `bos`), right-padded."""
    width = hi + 1 + int(bos)
    out = torch.full((n, width), PAD)
    for i in range(n):
        k = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        row = ([BOS] if bos else []) + torch.randint(3, VOCAB, (k,), generator=gen).tolist() + [EOS]
        out[i, :len(row)] = torch.tensor(row)
    return out


def words(rows: torch.Tensor) -> list[list[int]]:
    return [[t for t in row if t not in (PAD, BOS, EOS)] for row in rows.tolist()]


def data(n: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    src = sentences(n, gen, 3, 7, bos=False)
    tgt = sentences(n, gen, 2, 6, bos=True)
    return src, tgt, torch.randn(n, FEATURES, generator=gen)


def train(model: MMTModel, src, tgt, features, steps: int, lr: float = 1e-2) -> list[float]:
    opt = torch.optim.Adam(model.translation_parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.translation_loss(src, tgt, features)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.fixture(scope="module")
def trained():
    model = tiny()
    src, tgt, features = data()
    losses = train(model, src, tgt, features, 200)
    return model, src, tgt, features, losses


def test_q_overfits_and_beam_and_greedy_reproduce_every_target(trained):
    model, src, tgt, features, losses = trained
    model.eval()
    with torch.no_grad():
        assert float(model.translation_loss(src, tgt, features)) < 0.05, losses[-5:]
    assert model.training is False
    expected = words(tgt)
    beam = model.translate(src, features, beam_size=5)
    assert beam.tokens == expected
    assert model.translate(src, features, beam_size=1).tokens == expected
    # decode_state/decode_step drive the project's beam search directly as well
    with torch.no_grad():
        state = model.decode_state(src, features)
    greedy = greedy_decode(model.decode_step, state, batch_size=src.shape[0], bos_id=BOS, eos_id=EOS, max_len=12)
    assert greedy.tokens == expected
    assert beam.scores.shape == (8,) and bool((beam.scores <= 0).all())


def test_the_image_matters_to_the_multimodal_q(trained):
    model, src, tgt, features, _ = trained
    model.eval()
    with torch.no_grad():
        a = model(src, tgt, features, return_logits=True)["logits"]
        b = model(src, tgt, features.flip(0), return_logits=True)["logits"]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="features are required"):
        model(src, tgt)
    with pytest.raises(ValueError, match="features must be float"):
        model(src, tgt, features[:, :5])


def test_translate_restores_training_mode(trained):
    model, src, _, features, _ = trained
    model.train()
    model.translate(src[:2], features[:2], beam_size=2)
    assert all(m.training for m in model.modules())


def test_a_sentence_gives_the_same_logits_and_h_T_alone_or_in_a_padded_batch():
    model = tiny(reconstruction="q-waae")
    model.eval()
    gen = torch.Generator().manual_seed(3)
    src = torch.tensor([[5, 6, 7, EOS, PAD, PAD, PAD], [4, 9, 10, 11, 12, 13, EOS], [8, EOS, PAD, PAD, PAD, PAD, PAD]])
    tgt = torch.tensor([[BOS, 3, 4, EOS, PAD, PAD, PAD], [BOS, 5, 6, 7, 8, 9, EOS], [BOS, 10, EOS, PAD, PAD, PAD, PAD]])
    features = torch.randn(3, FEATURES, generator=gen)
    with torch.no_grad():
        batch = model(src, tgt, features, return_logits=True)
        for i in range(3):
            n_src, n_tgt = int((src[i] != PAD).sum()), int((tgt[i] != PAD).sum())
            alone = model(src[i:i + 1, :n_src], tgt[i:i + 1, :n_tgt], features[i:i + 1], return_logits=True)
            assert alone["logits"].shape[1] == n_tgt - 1
            torch.testing.assert_close(batch["logits"][i, :n_tgt - 1], alone["logits"][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch["h_T"][i], alone["h_T"][0], atol=1e-5, rtol=1e-5)
            # extra padding on the right changes nothing either
            padded = model(torch.cat([src[i:i + 1], torch.zeros(1, 3, dtype=torch.long)], 1),
                           torch.cat([tgt[i:i + 1], torch.zeros(1, 4, dtype=torch.long)], 1), features[i:i + 1])
            torch.testing.assert_close(padded["h_T"][0], alone["h_T"][0], atol=1e-5, rtol=1e-5)
        # the loss is the token mean over the whole batch
        counts = (tgt[:, 1:] != PAD).sum(1).float()
        per_sample = torch.stack([model(src[i:i + 1], tgt[i:i + 1], features[i:i + 1])["loss"] for i in range(3)])
        torch.testing.assert_close(batch["loss"], (per_sample * counts).sum() / counts.sum())
        assert float(batch["num_tokens"]) == float(counts.sum())


def test_h_T_is_the_state_after_predicting_each_samples_eos():
    model = tiny()
    model.eval()
    src = torch.tensor([[5, 6, 7, EOS], [4, 9, EOS, PAD]])
    tgt = torch.tensor([[BOS, 3, 4, 5, 6, EOS], [BOS, 7, 8, EOS, PAD, PAD]])
    features = torch.randn(2, FEATURES)
    with torch.no_grad():
        h_T = model(src, tgt, features)["h_T"]
        state = model.decode_state(src, features)
        states = []
        for t in range(tgt.shape[1] - 1):  # feed BOS, then the words, then EOS/PAD
            _, state = model.decode_step(tgt[:, t], state)
            states.append(state["h"])
    # sample 0 predicts EOS at step 4 (input 6); sample 1 at step 2 (input 8), not at the padded last step
    torch.testing.assert_close(h_T[0], states[4][0])
    torch.testing.assert_close(h_T[1], states[2][1])
    assert not torch.allclose(h_T[1], states[4][1], atol=1e-4)
    mean_model = tiny(final_state="mean")
    mean_model.eval()
    with torch.no_grad():
        h_mean = mean_model(src, tgt, features)["h_T"]
        state = mean_model.decode_state(src, features)
        hs = []
        for t in range(3):
            _, state = mean_model.decode_step(tgt[:, t], state)
            hs.append(state["h"][1])
    torch.testing.assert_close(h_mean[1], torch.stack(hs).mean(0))


def test_text_only_q_has_no_visual_projection_and_still_trains():
    visual, text = tiny(), tiny(visual_context=False)
    names = {n for n, _ in visual.named_parameters()}
    text_names = {n for n, _ in text.named_parameters()}
    assert names - text_names == {"decoder.visual_projection.weight", "decoder.visual_projection.bias"}
    assert text_names < names
    assert text.decoder.visual_projection is None
    src, tgt, features = data(seed=1)
    with torch.no_grad():
        text.eval()
        # features are ignored by the text-only Q
        a = text(src, tgt)["loss"]
        torch.testing.assert_close(a, text(src, tgt, features)["loss"])
    losses = train(text, src, tgt, None, 120)
    assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])
    assert len(text.translate(src, beam_size=2).tokens) == 8


def test_translate_never_emits_pad_or_bos():
    model = tiny()
    with torch.no_grad():
        model.decoder.output.bias[PAD] = 50.0
        model.decoder.output.bias[BOS] = 40.0
        model.decoder.output.bias[7] = 30.0
    src, _, features = data(n=3)
    for beam in (1, 3):
        hyps = model.translate(src, features, beam_size=beam, max_len=6)
        assert hyps.tokens == [[7] * 6] * 3  # PAD and BOS masked, EOS never best
        assert all(PAD not in row and BOS not in row for row in hyps.tokens)
    with torch.no_grad():
        model.decoder.output.bias[EOS] = 60.0
    assert model.translate(src, features, beam_size=2).tokens == [[], [], []]


@pytest.mark.parametrize("key,value", [
    ("source_vocab_size", 0), ("target_vocab_size", "big"), ("embed_dim", -1), ("hidden_dim", 1.5),
    ("attention_dim", 0), ("bottleneck_dim", True), ("feature_dim", 0), ("max_len", 0), ("noise_dim", 0),
    ("dropout_emb", 1.0), ("dropout_ctx", -0.1), ("dropout_out", "x"), ("dropout_emb_target", 2),
    ("generator_dropout", 1.5), ("visual_context", 1), ("tied_embeddings", "yes"), ("final_state", "first"),
    ("reconstruction", "gan"), ("critic_hidden_dims", []), ("critic_hidden_dims", [8, 0]), ("prior_std", 0),
    ("pad_id", VOCAB), ("bos_id", -1), ("eos_id", 0),
])
def test_config_errors_are_one_line_naming_the_key(key, value):
    with pytest.raises(ValueError) as err:
        MMTConfig(**{**TINY, key: value})
    message = str(err.value)
    assert "\n" not in message
    assert key in message


def test_tied_embeddings_need_matching_sizes_and_share_the_matrix():
    with pytest.raises(ValueError, match="tied_embeddings.*bottleneck_dim"):
        MMTConfig(**{**TINY, "bottleneck_dim": 8})
    model = tiny()
    assert model.decoder.output.weight is model.decoder.embedding.weight
    untied = tiny(tied_embeddings=False, bottleneck_dim=8)
    assert untied.decoder.output.weight.shape == (VOCAB, 8)


def test_registry_builds_it_and_names_unknown_keys():
    model = build_model("mmt", {**TINY, "reconstruction": "regression"})
    assert isinstance(model, MMTModel) and isinstance(model.generator, RegressionHead)
    with pytest.raises(ValueError, match="'hidden_size'"):
        build_model("mmt", {**TINY, "hidden_size": 4})
    with pytest.raises(ValueError, match="target_vocab_size"):
        build_model("mmt", {"source_vocab_size": 5})


def shapes(module: torch.nn.Module) -> list[tuple[int, ...]]:
    """[in, out] of each linear layer, as the paper writes W."""
    return [tuple(m.weight.shape[::-1]) for m in module.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("form", ["none", "regression", "g-wgan", "q-waae"])
def test_each_form_builds_the_papers_modules_at_default_sizes(form):
    torch.manual_seed(0)
    model = MMTModel(MMTConfig(source_vocab_size=50, target_vocab_size=60, reconstruction=form))
    c = model.config
    assert (c.embed_dim, c.hidden_dim, c.attention_dim, c.bottleneck_dim, c.feature_dim) == (256, 512, 1024, 256, 2048)
    assert model.encoder.rnn.bidirectional and model.encoder.rnn.hidden_size == 512
    d = model.decoder
    assert shapes(d.context_attention) == [(1024, 1024)] and shapes(d.hidden_attention) == [(512, 1024)]
    assert shapes(d.visual_projection) == [(2048, 1024)] and shapes(d.context_projection) == [(1024, 512)]
    assert shapes(d.bottleneck) == [(512, 256)] and shapes(d.output) == [(256, 60)]
    if form == "none":
        assert model.generator is None and model.critic is None
    elif form == "regression":
        assert type(model.generator) is RegressionHead and model.critic is None
        assert shapes(model.generator) == [(512, 2048)]
    elif form == "g-wgan":
        assert isinstance(model.generator, ConditionalGenerator) and isinstance(model.critic, FeatureCritic)
        assert shapes(model.generator) == [(640, 2048)]
        assert shapes(model.critic) == [(2560, 1024), (1024, 512), (512, 1)]
    else:
        assert isinstance(model.generator, LatentGenerator) and isinstance(model.critic, LatentCritic)
        assert shapes(model.generator) == [(512, 2048)]
        assert shapes(model.critic) == [(512, 1)]
    groups = [model.translation_parameters(), model.generator_parameters(), model.critic_parameters()]
    ids = [{id(p) for p in g} for g in groups]
    assert sum(len(g) for g in groups) == len(list(model.parameters()))  # disjoint and complete
    assert set().union(*ids) == {id(p) for p in model.parameters()}


def test_reconstruction_helpers_shapes_and_noise():
    model = tiny(reconstruction="g-wgan")
    h = torch.randn(4, 32)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    a = model.reconstruct(h, generator=gen)
    assert a.shape == (4, FEATURES) and bool((a.abs() < 1).all())
    z = torch.zeros(4, 8)
    torch.testing.assert_close(model.reconstruct(h, z), model.reconstruct(h, z))
    assert not torch.allclose(model.reconstruct(h), model.reconstruct(h))  # the noise makes G stochastic
    assert model.critic(a, h).shape == (4,)
    with pytest.raises(ValueError, match="noise"):
        model.reconstruct(h, torch.zeros(4, 3))
    latent = tiny(reconstruction="q-waae")
    prior = latent.sample_prior(5, generator=torch.Generator().manual_seed(0))
    assert prior.shape == (5, 32) and latent.critic(prior).shape == (5,)
    with pytest.raises(ValueError, match="no generator"):
        tiny().reconstruct(h)
