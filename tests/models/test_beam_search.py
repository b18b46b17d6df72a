"""The shared beam search against hand-computed decodes, greedy decoding and exhaustive search.

Every step function here looks its log-probabilities up by the prefix it reads from its own state,
so a state that beam search reorders wrongly gives wrong scores, and the exact comparisons fail.
"""

from __future__ import annotations

import math
import zlib
from collections import namedtuple

import pytest
import torch

from dist_train.models.beam_search import Hypotheses, beam_search, greedy_decode, map_state

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4
VOCAB = 5
WORDS = (EOS, A, B)

Counter = namedtuple("Counter", ["steps"])


def distribution(eos: float = 0.0, a: float = 0.0, b: float = 0.0) -> torch.Tensor:
    p = torch.zeros(VOCAB, dtype=torch.float64)
    p[EOS], p[A], p[B] = eos, a, b
    return p.log()  # log(0) = -inf: PAD, BOS and unlisted words are impossible


class TableModel:
    """Log-probabilities per (element, prefix): a fixed table with a default, or seeded random ones."""

    def __init__(self, tables=None, default=None, seed: int | None = None, beam_size: int = 1):
        self.tables = tables or {}
        self.default = default if default is not None else distribution(1 / 3, 1 / 3, 1 / 3)
        self.seed = seed
        self.beam_size = beam_size
        self.steps = 0

    def log_probs(self, elem: int, prefix: tuple[int, ...]) -> torch.Tensor:
        if self.seed is not None:
            gen = torch.Generator().manual_seed(zlib.crc32(repr((self.seed, elem, prefix)).encode()))
            logits = torch.full((VOCAB,), float("-inf"), dtype=torch.float64)
            logits[list(WORDS)] = 2.0 * torch.randn(3, generator=gen, dtype=torch.float64)
            return logits.log_softmax(0)
        return self.tables.get(elem, {}).get(prefix, self.default)

    def state(self, elems: list[int]):
        n = len(elems)
        return {"elem": torch.tensor(elems), "nest": [torch.empty(n, 0, dtype=torch.long), Counter(torch.zeros(n))]}

    def step(self, last: torch.Tensor, state):
        # The nest keeps its structure, and every row still belongs to its own element.
        assert isinstance(state, dict) and isinstance(state["nest"], list) and isinstance(state["nest"][1], Counter)
        elem, (prefix, counter) = state["elem"], state["nest"]
        rows = len(last)
        assert prefix.shape == (rows, max(self.steps - 1, 0))
        assert torch.equal(counter.steps, torch.full((rows,), float(self.steps)))
        elems = elem.tolist()
        assert elems == sorted(elems) and all(elems.count(e) == self.beam_size for e in set(elems))
        self.steps += 1
        if self.steps == 1:
            assert torch.equal(last, torch.full((rows,), BOS))
            full = prefix
        else:
            full = torch.cat([prefix, last[:, None]], dim=1)  # the words generated so far, per row
        log_probs = torch.stack([self.log_probs(e, tuple(p)) for e, p in zip(elems, full.tolist())])
        return log_probs, {"elem": elem, "nest": [full, Counter(counter.steps + 1)]}

    def search(self, elems: list[int], **kw) -> Hypotheses:
        self.steps = 0
        self.beam_size = kw.get("beam_size", 1)
        return beam_search(self.step, self.state(elems), batch_size=len(elems), bos_id=BOS, eos_id=EOS, **kw)


def reference_greedy(model: TableModel, elem: int, max_len: int, length_penalty: float):
    prefix: tuple[int, ...] = ()
    total = 0.0
    for t in range(1, max_len + 1):
        lp = model.log_probs(elem, prefix)
        word = int(lp.argmax())
        total += float(lp[word])
        if word == EOS:
            return list(prefix), total / t**length_penalty
        prefix += (word,)
    return list(prefix), total / max_len**length_penalty


def exhaustive(model: TableModel, elem: int, max_len: int, length_penalty: float):
    best: list = [float("-inf"), None]

    def consider(tokens, total, length):
        score = total / length**length_penalty
        if score > best[0]:
            best[:] = [score, list(tokens)]

    def extend(prefix, total):
        lp = model.log_probs(elem, prefix)
        for word in WORDS:
            s = total + float(lp[word])
            if word == EOS:
                consider(prefix, s, len(prefix) + 1)
            elif len(prefix) + 1 == max_len:
                consider(prefix + (word,), s, max_len)
            else:
                extend(prefix + (word,), s)

    extend((), 0.0)
    return best[1], best[0]


# Greedy takes A (0.6) and then must stop (0.4): 0.24. B (0.4) then EOS (0.9) is 0.36.
GREEDY_TRAP = {0: {(): distribution(a=0.6, b=0.4), (A,): distribution(eos=0.4, a=0.3, b=0.3),
                   (B,): distribution(eos=0.9, a=0.05, b=0.05)}}

# Stopping at once (0.45) wins on summed log-probability; A A EOS (0.55 * 0.8 * 0.5 = 0.22) wins
# per token.
SHORT_OR_LONG = {0: {(): distribution(eos=0.45, a=0.55), (A,): distribution(eos=0.12, a=0.8, b=0.08),
                     (A, A): distribution(eos=0.5, a=0.3, b=0.2)}}


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_two_finds_what_greedy_misses(length_penalty):
    model = TableModel(GREEDY_TRAP)
    greedy = model.search([0], beam_size=1, max_len=5, length_penalty=length_penalty)
    assert greedy.tokens == [[A]]
    assert greedy.scores.tolist() == pytest.approx([math.log(0.6 * 0.4) / 2**length_penalty], rel=1e-12)
    beam = model.search([0], beam_size=2, max_len=5, length_penalty=length_penalty)
    assert beam.tokens == [[B]]
    assert beam.scores.tolist() == pytest.approx([math.log(0.4 * 0.9) / 2**length_penalty], rel=1e-12)
    # Both beams ended at step 2, so the search stopped there.
    assert model.steps == 2


@pytest.mark.parametrize(
    ("length_penalty", "tokens", "score"),
    [
        (0.0, [], math.log(0.45)),
        (0.5, [], math.log(0.45)),  # A A EOS: log(0.22) / sqrt(3) = -0.874 < log(0.45) = -0.799
        (1.0, [A, A], math.log(0.55 * 0.8 * 0.5) / 3),  # -0.505; A A A at max_len: log(0.132) / 3 = -0.675
    ],
)
def test_length_penalty_changes_the_choice(length_penalty, tokens, score):
    hyp = TableModel(SHORT_OR_LONG).search([0], beam_size=2, max_len=3, length_penalty=length_penalty)
    assert hyp.tokens == [tokens]
    assert hyp.scores.tolist() == pytest.approx([score], rel=1e-12)


def test_length_penalty_zero_stops_once_no_live_beam_can_win():
    model = TableModel(SHORT_OR_LONG)
    model.search([0], beam_size=2, max_len=10, length_penalty=0.0)
    # After step 2 the live beam A A has log(0.44) < log(0.45), the finished [] : nothing can beat it.
    assert model.steps == 2


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_one_is_greedy(length_penalty):
    model = TableModel(seed=1)
    elems = list(range(8))
    hyp = model.search(elems, beam_size=1, max_len=6, length_penalty=length_penalty)
    model.steps = 0
    again = greedy_decode(model.step, model.state(elems), batch_size=8, bos_id=BOS, eos_id=EOS, max_len=6,
                          length_penalty=length_penalty)
    for e in elems:
        tokens, score = reference_greedy(model, e, 6, length_penalty)
        assert hyp.tokens[e] == tokens
        assert float(hyp.scores[e]) == pytest.approx(score, rel=1e-12)
    assert again.tokens == hyp.tokens and torch.equal(again.scores, hyp.scores)


@pytest.mark.parametrize("length_penalty", [0.0, 0.5, 1.0])
def test_wide_beam_is_exhaustive_search(length_penalty):
    # 27 beams keep every candidate of 4 steps over 3 words, so the search is exact.
    model = TableModel(seed=2)
    elems = list(range(6))
    hyp = model.search(elems, beam_size=27, max_len=4, length_penalty=length_penalty)
    for e in elems:
        tokens, score = exhaustive(model, e, 4, length_penalty)
        assert hyp.tokens[e] == tokens
        assert float(hyp.scores[e]) == pytest.approx(score, rel=1e-12)
        assert len(hyp.tokens[e]) <= 4


def test_batched_equals_each_element_alone():
    model = TableModel(seed=3)
    elems = list(range(7))
    batched = model.search(elems, beam_size=3, max_len=8, length_penalty=1.0)
    for e in elems:
        alone = model.search([e], beam_size=3, max_len=8, length_penalty=1.0)
        assert alone.tokens == [batched.tokens[e]]
        assert float(alone.scores[0]) == pytest.approx(float(batched.scores[e]), rel=1e-12)


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("max_len", [1, 4])
def test_max_len_bounds_the_hypotheses(beam_size, max_len):
    model = TableModel(default=distribution(eos=0.1, a=0.6, b=0.3))
    for length_penalty in (0.0, 1.0):
        hyp = model.search([0, 1], beam_size=beam_size, max_len=max_len, length_penalty=length_penalty)
        assert model.steps == max_len
        # A^max_len beats every finished hypothesis: it counts although it never emitted EOS.
        assert hyp.tokens == [[A] * max_len] * 2
        expected = max_len * math.log(0.6) / max_len**length_penalty
        assert hyp.scores.tolist() == pytest.approx([expected] * 2, rel=1e-12)


def test_state_reordering_follows_the_beams():
    # Each element's table only allows continuations of one hidden path, so a row whose state
    # came from another beam (or element) would read -inf everywhere and lose the path.
    paths = {0: (A, B, B, A), 1: (B, A, A, B), 2: (B, B, A, A)}
    tables = {}
    for e, path in paths.items():
        tables[e] = {path[:i]: distribution(a=1.0) if path[i] == A else distribution(b=1.0) for i in range(4)}
        tables[e][path] = distribution(eos=1.0)
        # decoys: a likelier first word that leads nowhere
        first = B if path[0] == A else A
        tables[e][()] = distribution(**{"a": 0.3, "b": 0.7} if first == B else {"a": 0.7, "b": 0.3})
    model = TableModel(tables, default=distribution(eos=1e-6, a=1e-6, b=1e-6))
    hyp = model.search([0, 1, 2], beam_size=2, max_len=6, length_penalty=0.0)
    assert hyp.tokens == [list(paths[e]) for e in range(3)]
    assert hyp.scores.tolist() == pytest.approx([math.log(0.3)] * 3, rel=1e-12)


def test_state_of_unsupported_type_and_bad_arguments():
    with pytest.raises(TypeError, match="str"):
        map_state(lambda x: x, {"a": "text"})
    model = TableModel()
    with pytest.raises(ValueError, match="beam_size"):
        model.search([0], beam_size=0)
    with pytest.raises(ValueError, match="length_penalty"):
        model.search([0], length_penalty=-1.0)
    with pytest.raises(ValueError, match="leading dim batch_size=2"):
        beam_search(model.step, torch.zeros(3), batch_size=2, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match="log_probs"):
        beam_search(lambda last, s: (torch.zeros(len(last)), s), torch.zeros(2), batch_size=2, bos_id=BOS, eos_id=EOS)
    empty = model.search([], beam_size=2)
    assert empty.tokens == [] and empty.scores.shape == (0,)
