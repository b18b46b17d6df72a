"""The starting state of the Globetrotter rows of docs/results.md: untrained models, three seeds.

Before any training step the text embeddings already group by language (the languages of the
built-in benchmark share almost no sentencepiece pieces), and a `<txt>`-token head gives every caption
nearly the same embedding. This prints, per text-head setting, sentence translation under both
protocols, the own-language share of the top M-1 neighbours, and the mean pairwise cosine of the
embedding L_x reads, averaged over the seeds of the results config.

    python tools/results/globetrotter_init.py
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from dist_train.eval.embed import embed_tokens, read_split_captions
from dist_train.eval.retrieval import bitext_retrieval
from dist_train.eval.run import translation_metrics
from dist_train.train.data import dataset_vocab
from dist_train.train.main import load_train_config
from dist_train.train.objectives import build_objective

CONFIG = "configs/globetrotter-results.yaml"
SETTINGS = {"text_heads=shared (the results config)": [],
            "text_heads=separate (the paper's)": ["model_config.text_heads=separate"]}


def main() -> int:
    captions = None
    for name, overrides in SETTINGS.items():
        rows = []
        for seed in (0, 1, 2):
            cfg = load_train_config(CONFIG, [*overrides, f"seed={seed}", "out_dir=unused"])
            vocab = dataset_vocab(cfg)
            captions = captions or read_split_captions(cfg.data.shards, cfg.eval.split)
            torch.manual_seed(cfg.seed)  # as training initialises
            model = build_objective(cfg, vocab).build_model().eval()
            with torch.no_grad():
                out = {key: embed_tokens(lambda t, key=key: model.encode_text(t)[key], captions.tokens, vocab,
                                         cfg.data.max_tokens, 128) for key in ("text_text", "text_cross")}
            metrics = translation_metrics(out["text_text"], captions)
            own = bitext_retrieval(out["text_text"], captions.groups, captions.languages).own_language_share
            unit = out["text_cross"] / np.linalg.norm(out["text_cross"], axis=1, keepdims=True)
            cosine = float((unit @ unit.T)[np.triu_indices(len(unit), 1)].mean())
            rows.append([metrics["sentence_translation"]["retrieved_positives"]["value"],
                         metrics["sentence_translation_pooled"]["retrieved_positives"]["value"], own, cosine])
        mean = np.mean(rows, axis=0)
        print(f"{name}: sentence translation {mean[0]:.2f} % (other languages), {mean[1]:.2f} % (pooled); "
              f"own-language share {mean[2]:.1f} %; mean pairwise cosine of the L_x text embedding {mean[3]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
