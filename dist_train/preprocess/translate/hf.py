"""Translation with Hugging Face transformers: MarianMT, NLLB and M2M100 from local directories.

The reference backend: it runs any of these models as published, with no conversion step.
CTranslate2 (ct2.py) is faster on CPU; this one is what it is checked against.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import TranslatorError
from .family import MARIAN, LanguageTokenizer
from .model_dirs import LocalModelTranslator, PairModels, check_model_dir, hub_offline

HINT = ("pass the local directory of a MarianMT, NLLB or M2M100 model (one saved with save_pretrained, "
        "e.g. a copy of Helsinki-NLP/opus-mt-en-de), or a template like /models/opus-mt-{src}-{tgt}")


@dataclass
class _LoadedModel:
    tokenizer: LanguageTokenizer
    model: Any  # a transformers seq2seq model, in eval mode on the translator's device


class HFTranslator(LocalModelTranslator):
    """Greedy or beam-search translation with `model.generate`.

    Decoding is set here and only here: the model's shipped generation defaults (opus-mt's
    beam 4-6, forced end of sentence at the length limit) are replaced, so the same settings
    mean the same decoding in every backend. `num_threads` sets torch's thread count for the
    whole process, which matters in Ray actors where OMP_NUM_THREADS is 1.
    """

    def __init__(self, model: str | os.PathLike, batch_size: int = 32, num_threads: int | None = None,
                 device: str = "cpu", max_new_tokens: int = 128, num_beams: int = 1,
                 language_codes: Mapping[str, str] | None = None, min_new_tokens: int = 0):
        super().__init__(batch_size)
        if max_new_tokens < 1 or num_beams < 1 or not 0 <= min_new_tokens <= max_new_tokens:
            raise TranslatorError(
                f"need max_new_tokens >= 1, num_beams >= 1 and 0 <= min_new_tokens <= max_new_tokens; got "
                f"max_new_tokens={max_new_tokens}, num_beams={num_beams}, min_new_tokens={min_new_tokens}")
        import torch

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device(device)
        self.max_new_tokens, self.min_new_tokens, self.num_beams = max_new_tokens, min_new_tokens, num_beams
        self.language_codes = dict(language_codes or {})
        self.models = PairModels(model, self._load)
        self.name = f"hf:{self.models.label}"

    def _load(self, path: Path) -> _LoadedModel:
        from transformers import AutoModelForSeq2SeqLM, GenerationConfig

        check_model_dir(path, "config.json", "Hugging Face", HINT)
        with hub_offline():
            model = AutoModelForSeq2SeqLM.from_pretrained(str(path), local_files_only=True)
        model.to(self.device).eval()
        config = model.config
        tokenizer = LanguageTokenizer.load(path, self.language_codes,
                                           getattr(config, "max_position_embeddings", None))
        model.generation_config = GenerationConfig(
            decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id, max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens or None, num_beams=self.num_beams, do_sample=False,
            # Marian starts decoding from <pad>; generating it is never right (CTranslate2 drops it)
            bad_words_ids=[[config.pad_token_id]] if tokenizer.family == MARIAN else None)
        return _LoadedModel(tokenizer, model)

    def generate_ids(self, texts: list[str], source: str, target: str) -> list[list[int]]:
        """Generated target token ids for one batch, without language token and end of sentence."""
        import torch

        loaded = self.models.get(source, target)
        tokenizer = loaded.tokenizer
        inputs = tokenizer.tokenizer.pad({"input_ids": tokenizer.encode(texts, source, target)},
                                         return_tensors="pt")
        prefix = tokenizer.target_prefix_id(target)
        extra = {} if prefix is None else {"forced_bos_token_id": prefix}
        with torch.inference_mode():
            output = loaded.model.generate(input_ids=inputs["input_ids"].to(self.device),
                                           attention_mask=inputs["attention_mask"].to(self.device), **extra)
        # column 0 is the decoder start symbol
        return [tokenizer.clean(row[1:], target) for row in output.tolist()]
