"""Real-format translation models with random weights, built locally in about a second.

Tests and benchmarks need MarianMT (opus-mt) and NLLB directories that go through exactly the
loading paths a downloaded model does (`from_pretrained`, the CTranslate2 converter), but there
is no model hub here. So the tokenizers are trained on the few sentences given, the weights are
random (seeded), and everything is written with `save_pretrained`. The translations are
nonsense; what counts is that they are deterministic, real tokens of the target vocabulary.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

MARIAN_SPECIAL = ("</s>", "<unk>")  # opus-mt vocab.json: eos 0, unk 1, ..., pad last
SPM_CONTROL = {"<unk>", "<s>", "</s>"}


def _train_sentencepiece(sentences: Iterable[str], vocab_size: int) -> bytes:
    """A unigram sentencepiece model in the layout opus-mt uses (unk 0, bos 1, eos 2, no pad).

    `hard_vocab_limit=False` lets a handful of sentences yield fewer pieces than asked for.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)), model_writer=model, vocab_size=vocab_size,
        hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    return model.getvalue()


def _spm_pieces(model_proto: bytes) -> list[str]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def _seeded_init(model, seed: int, init_std: float | None) -> None:
    """Re-draw every weight from one generator so a seed fixes the model whatever the global RNG.

    The default scale, 2 / sqrt(d_model), is large on purpose: small random weights give
    near-tied logits, and near ties let float rounding (batch padding, another backend) flip
    greedy choices; decisive logits make the nonsense translations stable.
    """
    import torch

    if init_std is None:
        init_std = 2.0 / model.config.d_model ** 0.5
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "embed_positions" in name:  # sinusoidal tables, not learned
                continue
            if name.endswith("layer_norm.weight") or name.endswith("layernorm_embedding.weight"):
                param.fill_(1.0)
            elif param.dim() == 1:
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * init_std)
        # padding rows stay zero, as in a trained model: Marian starts decoding from the pad
        # embedding, and CTranslate2 relies on it being zero. With untied embeddings the encoder,
        # decoder and `shared` tables are separate parameters, so every one is cleared.
        pad = model.config.pad_token_id
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Embedding) and "embed_positions" not in name:
                module.weight[pad].zero_()


def _never_generate(model, token_ids: Iterable[int], penalty: float = 30.0) -> None:
    """Keep `token_ids` (unk, language codes...) out of the output, as training would.

    A trained model never writes <unk> or, for NLLB, a language code mid-sentence, but a random
    one does, and such special tokens decode to nothing. Marian has an output bias
    (`final_logits_bias`) for this. M2M100 has none, so its final layer norm gets one constant
    feature (weight 0, bias 1) that the output projection, untied from the input embeddings for
    this, reads as a per-token bias. HF and CTranslate2 compute both alike, so they keep agreeing.
    """
    import torch

    ids = sorted(set(token_ids))
    with torch.no_grad():
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias[0, ids] = -penalty
            return
        if model.config.tie_word_embeddings:
            raise ValueError("the output projection must be untied from the embeddings to get a bias")
        output_norm = model.model.decoder.layer_norm
        output_norm.weight[0] = 0.0
        output_norm.bias[0] = 1.0
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        head[ids, 0] = -penalty


def _dims(d_model: int, layers: int, heads: int | None, ffn_dim: int | None) -> dict:
    if heads is None:
        heads = max(2, d_model // 64)  # opus-mt: 512 / 64 = 8
    if d_model % heads:
        raise ValueError(f"d_model {d_model} must be divisible by heads {heads}")
    ffn = ffn_dim or 4 * d_model
    return dict(d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                encoder_attention_heads=heads, decoder_attention_heads=heads,
                encoder_ffn_dim=ffn, decoder_ffn_dim=ffn)


def build_tiny_marian(out_dir: str | Path, source_sentences: Iterable[str], target_sentences: Iterable[str], *,
                      source_lang: str = "en", target_lang: str | None = "de",
                      target_language_tokens: Sequence[str] = (), d_model: int = 32, layers: int = 1,
                      heads: int | None = None, ffn_dim: int | None = None, vocab_size: int = 256,
                      max_positions: int = 512, pad_vocab_to: int | None = None, init_std: float | None = None,
                      seed: int = 0) -> Path:
    """A MarianMT pair model directory like `Helsinki-NLP/opus-mt-{source_lang}-{target_lang}`.

    opus-mt-en-de's own size is `d_model=512, layers=6, heads=8, ffn_dim=2048` (with a 58k
    vocabulary; here the vocabulary is whatever the sentences yield, at most about `vocab_size`
    per side). `target_language_tokens` (e.g. ("fra", "deu")) makes a multi-target model like
    opus-mt-en-ROMANCE, which reads the target language from a `>>fra<<` token before the text.
    `pad_vocab_to` (58101 for opus-mt-en-de) adds never-generated filler tokens so that the output
    layer, a large part of decoding time, costs what it does in the real model.
    """
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source_spm = _train_sentencepiece(source_sentences, vocab_size)
    target_spm = _train_sentencepiece(target_sentences, vocab_size)
    (out / "source.spm").write_bytes(source_spm)
    (out / "target.spm").write_bytes(target_spm)

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(MARIAN_SPECIAL)}
    for code in target_language_tokens:
        vocab[f">>{code}<<"] = len(vocab)
    for piece in _spm_pieces(source_spm) + _spm_pieces(target_spm):
        if piece not in SPM_CONTROL and piece not in vocab:
            vocab[piece] = len(vocab)
    fillers = [f"<filler_{i}>" for i in range(max(0, (pad_vocab_to or 0) - len(vocab) - 1))]
    vocab.update({token: len(vocab) + i for i, token in enumerate(fillers)})
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")

    tokenizer = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                                vocab=str(out / "vocab.json"), source_lang=source_lang, target_lang=target_lang,
                                model_max_length=max_positions)
    tokenizer.save_pretrained(out)

    pad, eos = vocab["<pad>"], vocab["</s>"]
    config = MarianConfig(vocab_size=len(vocab), max_position_embeddings=max_positions,
                          pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad,
                          forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                          scale_embedding=True, share_encoder_decoder_embeddings=True,
                          activation_function="swish", tie_word_embeddings=True,
                          **_dims(d_model, layers, heads, ffn_dim))
    model = MarianMTModel(config)
    _seeded_init(model, seed, init_std)
    _never_generate(model, [vocab["<unk>"]] + [vocab[token] for token in fillers])
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad, eos_token_id=eos, pad_token_id=pad, bad_words_ids=[[pad]],
        max_length=max_positions, num_beams=1)
    model.save_pretrained(out)
    return out


def build_tiny_nllb(out_dir: str | Path, sentences_by_language: Mapping[str, Iterable[str]], *, d_model: int = 32,
                    layers: int = 1, heads: int | None = None, ffn_dim: int | None = None, vocab_size: int = 256,
                    max_positions: int = 512, init_std: float | None = None, seed: int = 0) -> Path:
    """An NLLB-200 style many-to-many directory (M2M100 architecture, NllbTokenizer).

    The tokenizer keeps NLLB's 200 FLORES language-code tokens and learns `vocab_size` BPE pieces
    from the sentences of every language (keys of `sentences_by_language` are for the caller's
    bookkeeping; any language code works at translation time). It is trained with
    `train_new_from_iterator` starting from an NllbTokenizer built in memory, so nothing is fetched.
    """
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = [s for sentences in sentences_by_language.values() for s in sentences]
    if not corpus:
        raise ValueError("build_tiny_nllb needs at least one sentence")
    base = NllbTokenizer(model_max_length=max_positions)
    tokenizer = base.train_new_from_iterator([corpus], vocab_size=len(base) + vocab_size, show_progress=False)
    tokenizer.model_max_length = max_positions
    tokenizer.save_pretrained(out)

    bos, pad, eos = (tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>"))
    config = M2M100Config(vocab_size=len(tokenizer), max_position_embeddings=max_positions,
                          bos_token_id=bos, pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=eos,
                          dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, scale_embedding=True,
                          activation_function="relu", tie_word_embeddings=False, tokenizer_class="NllbTokenizer",
                          **_dims(d_model, layers, heads, ffn_dim))
    model = M2M100ForConditionalGeneration(config)
    _seeded_init(model, seed, init_std)
    _never_generate(model, [i for i in tokenizer.all_special_ids if i != eos])
    model.generation_config = GenerationConfig(
        decoder_start_token_id=eos, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
        max_length=max_positions, num_beams=1)
    model.save_pretrained(out)
    return out


__all__ = ["build_tiny_marian", "build_tiny_nllb"]
