"""Translation through a trained visual-pivoting captioner (`model: pivot`): no parallel text anywhere.

A caption in the source language is "translated" as the paper's caption-only case: a noise image's pivot
(pixels drawn with the training images' mean and std, which the model holds) is fitted by feedback
propagation so that the source language's decoder explains the caption, then the target language's
decoder describes it with beam search. The noise of each caption is seeded from the caption itself, so a
caption's translation does not depend on which others share its batch, and a rerun gives the same text.

`translate.model` is the captioner's run (its folder or checkpoints folder) or export; its vocabulary
is the `spm.model` beside it. Feedback-propagation steps and rate are the run's (`objective.pivot_steps`,
`pivot_lr`); `translate.num_beams` and `translate.max_length` (tokens) apply to the decoding.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from .base import Translator, TranslatorError


class PivotTranslator(Translator):
    def __init__(self, model: str, batch_size: int = 32, num_threads: int | None = None, device: str = "cpu",
                 num_beams: int = 5, max_length: int | None = None):
        super().__init__(batch_size)
        import torch

        from dist_train.eval.pivot import PivotSettings, _vocab_beside
        from dist_train.preprocess.vocab import load_vocab
        from dist_train.train.export import load_model

        if num_threads:
            torch.set_num_threads(int(num_threads))
        path = Path(model)
        if not path.exists():
            raise TranslatorError(f"translate.model: {model} not found (a pivot captioner's run, checkpoints or export)")
        try:
            self.model, config = load_model(path)
        except (FileNotFoundError, ValueError) as e:
            raise TranslatorError(f"translate.model: {model}: {e}") from None
        if config["model"] != "pivot":
            raise TranslatorError(f"translate.model: {model} holds a {config['model']} model; the pivot backend "
                                  "needs a visual-pivoting captioner (model: pivot)")
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.sp = load_vocab(_vocab_beside(path, config).read_bytes())
        mc = config["model_config"]
        self.settings = PivotSettings.of_run(config.get("objective", {}), beam_size=int(num_beams),
                                             batch_size=self.batch_size)
        trained = int(config.get("data", {}).get("max_tokens", mc.get("max_caption_len", 30)))
        self.max_tokens = min(int(max_length), trained) if max_length else trained  # never past what it learnt
        self.image_size = int(config.get("data", {}).get("image_size", 64))
        self.name = f"pivot:{path.resolve().parent.name if path.name == 'checkpoints' else path.resolve().name}"

    def supports(self, source: str, target: str) -> bool:
        languages = self.model.config.languages
        return source in languages and target in languages and source != target

    def check_pair(self, source: str, target: str) -> None:
        if not self.supports(source, target):
            raise TranslatorError(f"{self.name} cannot translate {source}->{target}: its captioners are "
                                  f"{', '.join(self.model.config.languages)}")

    def _noise_pivots(self, texts: list[str]):
        import torch

        images = []
        for text in texts:
            generator = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
            images.append(torch.randn(1, 3, self.image_size, self.image_size, generator=generator))
        mean = self.model.pixel_mean.view(1, 3, 1, 1).cpu()
        std = self.model.pixel_std.view(1, 3, 1, 1).cpu()
        with torch.no_grad():
            return self.model.encode_pivot((torch.cat(images) * std + mean).to(self.device))

    def _translate_batch(self, texts, source, target, metas):
        import numpy as np

        from dist_train.eval.pivot import PivotEvaluator
        from dist_train.preprocess.captions import normalize_caption

        mc = self.model.config
        vocab = type("V", (), {"bos_id": mc.bos_id, "eos_id": mc.eos_id, "pad_id": mc.pad_id})
        evaluator = PivotEvaluator(self.model, vocab, self.sp.decode, self.max_tokens, self.settings, self.device)
        given = [np.asarray(self.sp.encode(normalize_caption(t)), dtype=np.int64) for t in texts]
        return evaluator._fit_and_decode(self._noise_pivots(texts), given, source, target)
