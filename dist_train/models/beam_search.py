"""One batched beam search for every generative model (captioners, translation decoders).

A model only supplies `step(last_tokens, state) -> (log_probs, new_state)`; this module owns the
beams, so every model decodes with the same rules and a fix here fixes them all. The state is any
nest of tensors (tuple/list/dict) with one row per beam: it is expanded to `beam_size` rows per
element once and reordered with `index_select` after each step, so a step function never sees
beams. The rules:

- A step's candidates are the `beam_size` best extensions of an element's live beams by summed
  log-probability (at the first step only one beam is live, so beams start distinct). Candidates
  ending in EOS are finished hypotheses; the others are the next step's live beams. With
  `beam_size=1` this is exactly greedy decoding (argmax until EOS).
- A hypothesis scores `sum_logprob / length ** length_penalty`, length counting the generated
  tokens including EOS (0 disables the normalisation). At `max_len`, unfinished beams count as
  hypotheses of length `max_len`; the best hypothesis of each element is returned.
- An element stops once its best finished score is at least the best score any live beam could
  still reach (log-probabilities are <= 0, so a live beam's sum only falls, and its length is at
  most `max_len`): stopping early never changes the result, it only saves steps.

Several models decode as one ensemble through `ensemble_step`: it makes one step function of theirs,
whose state is the tuple of their states (so the rules above apply unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Hypotheses", "State", "Step", "beam_search", "ensemble_step", "eval_mode", "greedy_decode", "map_state"]

State = Any  # a tensor, or a tuple/list/dict (nested) of tensors, each with leading dim = rows
Step = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]  # (last_tokens [rows], state) -> (log_probs, state)


@dataclass
class Hypotheses:
    tokens: list[list[int]]  # best hypothesis per batch element, without BOS and without EOS
    scores: torch.Tensor  # [batch], the length-normalised log-probability of each


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """`model` in eval mode inside (what decoding needs); every submodule's own mode restored after, so
    a frozen part of a model in training stays frozen."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: State) -> State:
    """Apply `fn` to every tensor of a nested tuple/list/dict state (None passes through)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple):
        mapped = [map_state(fn, s) for s in state]
        return type(state)(*mapped) if hasattr(state, "_fields") else tuple(mapped)  # namedtuples too
    if isinstance(state, list):
        return [map_state(fn, s) for s in state]
    if isinstance(state, Mapping):
        return {k: map_state(fn, v) for k, v in state.items()}
    raise TypeError(f"beam search state must be tensors in tuples/lists/dicts, got {type(state).__name__}")


def _first_tensor(state: State) -> torch.Tensor | None:
    found: list[torch.Tensor] = []

    def visit(x: torch.Tensor) -> torch.Tensor:
        found.append(x)
        return x

    map_state(visit, state)
    return found[0] if found else None


def _check_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@torch.no_grad()
def beam_search(
    step: Callable[[torch.Tensor, State], tuple[torch.Tensor, State]],
    state: State,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    beam_size: int = 5,
    max_len: int = 30,
    length_penalty: float = 1.0,
) -> Hypotheses:
    """Best hypothesis per element; `state` has leading dim `batch_size` (see the module docstring).

    `step(last_tokens [rows], state) -> (log_probs [rows, vocab], new_state)` with
    rows = batch_size * beam_size. Rows of finished or pruned beams are still stepped (their
    scores are -inf), so a step function needs no special cases.
    """
    _check_int("batch_size", batch_size, 0)
    _check_int("beam_size", beam_size, 1)
    _check_int("max_len", max_len, 1)
    _check_int("bos_id", bos_id, 0)
    _check_int("eos_id", eos_id, 0)
    if not length_penalty >= 0:  # also rejects NaN
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty!r}")
    if batch_size == 0:
        return Hypotheses(tokens=[], scores=torch.empty(0))
    B, K = batch_size, beam_size
    rows = B * K
    first = _first_tensor(state)
    device = first.device if first is not None else torch.device("cpu")

    def expand(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[0] != B:
            raise ValueError(f"every state tensor needs leading dim batch_size={B}, got shape {tuple(x.shape)}")
        return x.repeat_interleave(K, dim=0)

    state = map_state(expand, state)
    last = torch.full((rows,), bos_id, dtype=torch.long, device=device)
    history = torch.empty((rows, 0), dtype=torch.long, device=device)
    row_base = (torch.arange(B, device=device) * K)[:, None]  # first row of each element
    beam_scores: torch.Tensor | None = None  # [B, K] summed log-probs, -inf for dead beams
    best_scores: torch.Tensor | None = None  # [B] normalised score of the best hypothesis so far
    best_tokens: list[list[int]] = [[] for _ in range(B)]

    for t in range(1, max_len + 1):
        log_probs, state = step(last, state)
        if log_probs.dim() != 2 or log_probs.shape[0] != rows:
            raise ValueError(f"step must return log_probs [{rows}, vocab], got {tuple(log_probs.shape)}")
        vocab = log_probs.shape[1]
        if beam_scores is None:
            beam_scores = torch.full((B, K), float("-inf"), dtype=log_probs.dtype, device=device)
            beam_scores[:, 0] = 0.0  # one live beam per element at the start: no duplicate beams
            best_scores = torch.full((B,), float("-inf"), dtype=log_probs.dtype, device=device)
        candidates = (beam_scores[:, :, None] + log_probs.reshape(B, K, vocab).to(beam_scores.dtype)).view(B, K * vocab)
        top_scores, top_index = candidates.topk(K, dim=1)  # [B, K], best first
        source_beam = torch.div(top_index, vocab, rounding_mode="floor")
        token = top_index % vocab
        valid = top_scores > float("-inf")
        ends = valid & (token == eos_id)
        live = valid & ~ends
        # Hypotheses completed at this step, all of length t (at max_len the live beams too).
        complete = valid if t == max_len else ends
        normalised = torch.where(complete, top_scores / (t ** length_penalty), float("-inf"))
        step_best, step_k = normalised.max(dim=1)  # first of equal maxima: the higher summed score
        source_row = (row_base + source_beam).view(-1)
        for b in torch.nonzero(step_best > best_scores).view(-1).tolist():
            k = int(step_k[b])
            tokens = history[b * K + int(source_beam[b, k])].tolist()
            if int(token[b, k]) != eos_id:
                tokens.append(int(token[b, k]))
            best_tokens[b] = tokens
        best_scores = torch.maximum(best_scores, step_best)
        if t == max_len:
            break
        history = torch.cat([history.index_select(0, source_row), token.view(-1, 1)], dim=1)
        state = map_state(lambda x: x.index_select(0, source_row), state)
        last = token.view(-1)
        beam_scores = torch.where(live, top_scores, float("-inf"))
        # The best any live beam can still reach: its sum can only fall, its length is t+1..max_len.
        reachable = torch.maximum(beam_scores / ((t + 1) ** length_penalty), beam_scores / (max_len ** length_penalty))
        done = best_scores >= reachable.max(dim=1).values
        if bool(done.all()):
            break
        beam_scores = torch.where(done[:, None], float("-inf"), beam_scores)

    assert best_scores is not None
    return Hypotheses(tokens=best_tokens, scores=best_scores)


def greedy_decode(
    step: Callable[[torch.Tensor, State], tuple[torch.Tensor, State]],
    state: State,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    max_len: int = 30,
    length_penalty: float = 1.0,
) -> Hypotheses:
    """Argmax until EOS or `max_len`: `beam_search` with one beam (scores normalised the same way)."""
    return beam_search(step, state, batch_size=batch_size, bos_id=bos_id, eos_id=eos_id, beam_size=1,
                       max_len=max_len, length_penalty=length_penalty)


def ensemble_step(steps: Sequence[Step]) -> Step:
    """One step function for several models decoding together, as fairseq's EnsembleModel does: each
    model steps on its own state and the next-token distribution is the mean of their probabilities,
    ``log(mean_m exp(log_probs_m))`` (log-mean-exp, so a token only one model rules out stays possible).
    Its state is the tuple of the models' states, in the order of `steps`; their vocabularies must be
    the same size (ValueError otherwise). The log-probabilities come in the widest dtype of the models'."""
    steps = list(steps)
    if not steps or not all(callable(s) for s in steps):
        raise ValueError("ensemble_step needs one step function per model, at least one")
    log_n = math.log(len(steps))

    def step(last_tokens: torch.Tensor, states: State) -> tuple[torch.Tensor, State]:
        if not isinstance(states, tuple) or len(states) != len(steps):
            raise ValueError(f"an ensemble of {len(steps)} models needs a tuple of {len(steps)} states")
        outs = [s(last_tokens, state) for s, state in zip(steps, states)]
        shapes = {tuple(log_probs.shape) for log_probs, _ in outs}
        if len(shapes) != 1:
            raise ValueError(f"the ensemble's models give log_probs of different shapes {sorted(shapes)}: "
                             "they must share one vocabulary")
        dtype = outs[0][0].dtype
        for log_probs, _ in outs[1:]:
            dtype = torch.promote_types(dtype, log_probs.dtype)
        stacked = torch.stack([log_probs.to(dtype) for log_probs, _ in outs])
        return torch.logsumexp(stacked, dim=0) - log_n, tuple(state for _, state in outs)

    return step
