"""Table 1's rows on a captioner that has learned its images by heart: decoding the image's own pivot
gives its captions, the retrieval baseline finds the training image whose caption was given, and feedback
propagation from another image's pivot turns towards the given caption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dist_train.eval.pivot import ImageCaptions, PivotEvaluator, PivotSettings, RetrievalPool, table_markdown
from dist_train.models.captioner import PivotCaptioner, PivotCaptionerConfig

PAD, BOS, EOS = 0, 1, 2
WORDS = ["", "", "", "red", "blue", "green", "circle", "square", "star", "rot", "blau", "grün", "Kreis",
         "Quadrat", "Stern", "big"]
VOCAB = len(WORDS)


def decode(ids) -> str:
    return " ".join(WORDS[i] for i in ids)


CAPTIONS = {  # image i: one caption per language, different words in each
    "en": [[3, 6], [4, 7], [5, 8], [15, 3, 7]],
    "de": [[9, 12], [10, 13], [11, 14], [15, 9, 13]],
}


@pytest.fixture(scope="module")
def learned():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = PivotCaptioner(PivotCaptionerConfig(languages=["en", "de"], vocab_sizes=[VOCAB, VOCAB],
                                                image_arch="spatial_cnn", pivot_layer="stage2", attention_dim=32,
                                                embed_dim=32, decoder_dim=32, dropout=0.0))
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rows = {lang: torch.tensor([[BOS, *c, EOS] + [PAD] * (4 - len(c)) for c in caps])
            for lang, caps in CAPTIONS.items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model.encoder.eval()
    for _ in range(200):
        loss = model(images, rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    vocab = type("V", (), {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD})
    evaluator = PivotEvaluator(model, vocab, decode, max_tokens=8,
                               settings=PivotSettings(steps=30, lr=0.05, beam_size=3, batch_size=2))
    captions = [ImageCaptions(f"img{i}", {lang: [np.array(CAPTIONS[lang][i])] for lang in CAPTIONS},
                              {lang: [decode(CAPTIONS[lang][i])] for lang in CAPTIONS}) for i in range(4)]
    yield model, evaluator, images, captions
    torch.set_num_threads(threads)


def test_rows_of_a_model_that_knows_its_images(learned):
    model, evaluator, images, captions = learned
    with torch.no_grad():
        pool = RetrievalPool(model.encode(images), {lang: [decode(c) for c in caps] for lang, caps in CAPTIONS.items()})
    result = evaluator.evaluate_pair("en", "de", captions, images, image_size=32, pool=pool, meteor=False)
    rows = result["rows"]
    for tgt, src in (("en", "de"), ("de", "en")):
        # the image's own pivot decodes its caption (ROUGE-L: BLEU-4 of 2-3 word captions has no 4-grams);
        # the retrieval baseline finds the image of the given caption
        assert rows[f"image->{tgt}"]["rouge_l"] == pytest.approx(1.0) and rows[f"image->{tgt}"]["cider"] > 1
        assert rows[f"retrieval {src}->{tgt}"]["rouge_l"] == pytest.approx(1.0)
        assert rows[f"image+{src}->{tgt}"]["n"] == 4
    assert result["samples"]["de->en"][0]["image->en"] == "red circle"
    assert result["samples"]["de->en"][0]["retrieval de->en"] == "red circle"
    table = table_markdown(result)
    assert table.count("\n") == 1 + 10 and "| retrieval de->en | " in table


def test_feedback_propagation_from_another_image_turns_towards_the_given_caption(learned):
    model, evaluator, images, captions = learned
    z_other = evaluator._pivots(images[[1, 2, 3, 0]])  # each image's pivot, shifted by one
    given = [captions[i].tokens["de"][0] for i in range(4)]
    before = evaluator._decode_pivots(z_other, "en")
    after = evaluator._fit_and_decode(z_other, given, "de", "en")
    wanted = [decode(CAPTIONS["en"][i]) for i in range(4)]
    assert sum(b == w for b, w in zip(before, wanted)) == 0  # the shifted pivots caption the other images
    assert sum(a == w for a, w in zip(after, wanted)) >= 3  # fitted to the German caption: its English one
