"""Translation with CTranslate2, and the conversion of transformers models to its format.

CTranslate2 runs the same MarianMT / NLLB / M2M100 weights 1.6x (fp32) to 2.4x (int8) faster
than transformers on CPU and loads in a tenth of the time. A converted directory holds
`model.bin` plus the original tokenizer files, so tokenization stays the one the model was
trained with.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import TranslatorError
from .family import LanguageTokenizer
from .model_dirs import LocalModelTranslator, PairModels, check_model_dir, hub_offline

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
                 "float32")
# tokenizer files of the supported families; config.json is not one (CTranslate2 writes its own)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "sentencepiece.bpe.model", "spiece.model", "source.spm", "target.spm", "vocab.json",
                   "target_vocab.json")
HINT = "convert a transformers model directory with dist_train.preprocess.translate.convert_model(hf_dir, out_dir)"


def convert_model(hf_dir: str | os.PathLike, out_dir: str | os.PathLike, quantization: str | None = None,
                  force: bool = False) -> Path:
    """Convert a local MarianMT / NLLB / M2M100 directory for CTranslate2; returns `out_dir`.

    The model is written to a temporary sibling folder and renamed into place, so an
    interrupted conversion never leaves a half-written `out_dir` that a later run would trust.
    `quantization` stores the weights as e.g. "int8" (smaller; CTranslate2 can still run them in
    another compute type).
    """
    from ctranslate2.converters import TransformersConverter

    hf_path, out = Path(hf_dir), Path(out_dir)
    check_model_dir(hf_path, "config.json", "Hugging Face",
                    "pass the directory of a transformers MarianMT, NLLB or M2M100 model")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise TranslatorError(f"unknown quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)} or None")
    if out.exists() and not force:
        raise TranslatorError(f"{out} already exists; pass force=True to replace it or choose another out_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.converting-{uuid.uuid4().hex[:8]}"
    copy_files = [name for name in TOKENIZER_FILES if (hf_path / name).is_file()]
    try:
        with hub_offline():
            try:
                TransformersConverter(str(hf_path), copy_files=copy_files).convert(
                    str(staging), quantization=quantization, force=False)
            except ValueError as err:
                raise TranslatorError(f"CTranslate2 cannot convert {hf_path}: {err}") from err
        _check_vocabulary(staging)
        if out.exists():  # force: move the old one aside first, so out_dir is never missing for long
            retired = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _check_vocabulary(converted: Path) -> None:
    """CTranslate2 looks tokens up by string in the vocabulary the converter wrote; check that
    every entry is the token the copied tokenizer has at that id, so ids mean the same on both
    sides. (The converter rebuilds the vocabulary from the tokenizer, and tokenizer API changes
    can shift it silently, e.g. dropped language tokens.)"""
    vocab_files = [converted / name for name in ("shared_vocabulary.json", "target_vocabulary.json")]
    tokenizer = LanguageTokenizer.load(converted).tokenizer
    for vocab_file in (f for f in vocab_files if f.is_file()):
        entries = json.loads(vocab_file.read_text(encoding="utf-8"))
        expected = tokenizer.convert_ids_to_tokens(list(range(len(entries))))
        wrong = [(i, got, want) for i, (got, want) in enumerate(zip(entries, expected))
                 if got != want and want is not None and not got.startswith("madeupword")]
        if wrong:
            raise TranslatorError(
                f"the converted vocabulary {vocab_file.name} disagrees with the tokenizer at {len(wrong)} ids "
                f"(first: {wrong[:3]}); this model family or tokenizer version is not supported by convert_model")


@dataclass
class _LoadedModel:
    tokenizer: LanguageTokenizer
    translator: Any  # ctranslate2.Translator


class CTranslate2Translator(LocalModelTranslator):
    """Greedy or beam-search translation of a directory written by `convert_model`.

    `num_threads` is CTranslate2's intra_threads (threads per batch); None lets it choose,
    which in a Ray actor (OMP_NUM_THREADS=1) means one thread, so set it there.
    `max_decoding_length` counts generated tokens the way HFTranslator's `max_new_tokens` does
    (the target-language token included), so equal settings give equal outputs.
    """

    def __init__(self, model: str | os.PathLike, compute_type: str = "default", batch_size: int = 32,
                 num_threads: int | None = None, device: str = "cpu", max_decoding_length: int = 128,
                 beam_size: int = 1, language_codes: Mapping[str, str] | None = None,
                 min_decoding_length: int = 0):
        super().__init__(batch_size)
        if max_decoding_length < 1 or beam_size < 1 or not 0 <= min_decoding_length <= max_decoding_length:
            raise TranslatorError(
                f"need max_decoding_length >= 1, beam_size >= 1 and 0 <= min_decoding_length <= "
                f"max_decoding_length; got {max_decoding_length}, {beam_size}, {min_decoding_length}")
        self.compute_type, self.device = compute_type, device
        self.num_threads = int(num_threads or 0)
        self.max_decoding_length, self.min_decoding_length = max_decoding_length, min_decoding_length
        self.beam_size = beam_size
        self.language_codes = dict(language_codes or {})
        self.models = PairModels(model, self._load)
        self.name = f"ctranslate2-{compute_type}:{self.models.label}"

    def _load(self, path: Path) -> _LoadedModel:
        import ctranslate2

        check_model_dir(path, "model.bin", "CTranslate2", HINT)
        try:
            translator = ctranslate2.Translator(str(path), device=self.device, compute_type=self.compute_type,
                                                intra_threads=self.num_threads, inter_threads=1)
        except ValueError as err:  # e.g. a compute type this machine cannot run
            raise TranslatorError(f"cannot load {path} with compute_type={self.compute_type!r} on "
                                  f"{self.device}: {err}") from err
        return _LoadedModel(LanguageTokenizer.load(path, self.language_codes), translator)

    def generate_ids(self, texts: list[str], source: str, target: str) -> list[list[int]]:
        """Generated target token ids for one batch, without language token and end of sentence."""
        loaded = self.models.get(source, target)
        tokenizer = loaded.tokenizer
        source_tokens = [tokenizer.tokens(ids) for ids in tokenizer.encode(texts, source, target)]
        prefix = tokenizer.target_prefix(target)
        results = loaded.translator.translate_batch(
            source_tokens, target_prefix=None if prefix is None else [[prefix]] * len(texts),
            beam_size=self.beam_size, max_decoding_length=self.max_decoding_length,
            min_decoding_length=self.min_decoding_length, max_batch_size=0)
        return [tokenizer.clean(tokenizer.ids(result.hypotheses[0]), target) for result in results]
