"""Length-sorted batching: the batches a backend sees and the order callers get back."""

from __future__ import annotations

from dist_train.preprocess.translate import Translator


class Reversing(Translator):
    """A complete translator with a trivial 'model' (reversal), recording the batches it gets."""

    name = "reverse"

    def __init__(self, batch_size):
        super().__init__(batch_size)
        self.batches: list[list[str]] = []

    def supports(self, source, target):
        return True

    def _translate_batch(self, texts, source, target, metas):
        self.batches.append(list(texts))
        return [t[::-1] + (f"|{m['i']}" if metas else "") for t, m in zip(texts, metas or [None] * len(texts))]


def test_batches_hold_similar_lengths_longest_first_and_results_keep_input_order():
    texts = ["ccc", "a", "eeeee", "bb", "dddd", "ffffff", "", "gg"]
    translator = Reversing(batch_size=3)
    assert translator.translate(texts, "en", "de") == [t[::-1] for t in texts]
    assert translator.batches == [["ffffff", "eeeee", "dddd"], ["ccc", "bb", "gg"], ["a", ""]]


def test_metas_travel_with_their_texts():
    texts = ["xx", "y", "zzz"]
    metas = [{"i": i} for i in range(3)]
    assert Reversing(batch_size=2).translate(texts, "en", "de", metas) == ["xx|0", "y|1", "zzz|2"]


def test_nothing_to_translate_calls_no_backend():
    translator = Reversing(batch_size=4)
    assert translator.translate([], "en", "de") == [] and translator.batches == []
