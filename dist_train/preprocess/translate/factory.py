"""Translators from configuration: one mapping, validated strictly.

A typo in a preprocessing config (`num_beam`, `backend: ct2`) would otherwise be ignored and a
long translation run would go ahead with defaults, so unknown keys and values are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Translator, TranslatorError

BACKENDS = ("hf", "ctranslate2", "world", "pivot")
COMMON_KEYS = {"backend", "batch_size"}
MODEL_KEYS = {"model", "num_threads", "device", "max_length", "min_length", "num_beams", "language_codes"}
KEYS_BY_BACKEND = {
    "hf": COMMON_KEYS | MODEL_KEYS,
    "ctranslate2": COMMON_KEYS | MODEL_KEYS | {"compute_type"},
    "world": COMMON_KEYS,
    "pivot": COMMON_KEYS | {"model", "num_threads", "device", "max_length", "num_beams"},
}


def build_translator(config: Mapping[str, Any]) -> Translator:
    """A translator from a mapping with keys:

    backend ("hf" | "ctranslate2" | "world" | "pivot"), model (directory or `{src}`/`{tgt}` template; for
    pivot a visual-pivoting captioner's run or export),
    compute_type (ctranslate2 only), batch_size, num_threads, device, max_length (generated
    tokens), min_length, num_beams, language_codes (ISO 639-1 -> model code overrides).
    Keys set to None count as absent.
    """
    if not isinstance(config, Mapping):
        raise TranslatorError(f"a translator config must be a mapping, got {type(config).__name__}")
    given = {str(k): v for k, v in config.items() if v is not None}
    known = set().union(*KEYS_BY_BACKEND.values())
    unknown = sorted(set(given) - known)
    if unknown:
        raise TranslatorError(f"unknown translator config key(s) {', '.join(unknown)}; known keys: "
                              f"{', '.join(sorted(known))}")
    backend = given.get("backend")
    if backend not in BACKENDS:
        raise TranslatorError(f"unknown translator backend {backend!r} (config key 'backend'); "
                              f"choose one of {', '.join(BACKENDS)}")
    misplaced = sorted(set(given) - KEYS_BY_BACKEND[backend])
    if misplaced:
        raise TranslatorError(f"config key(s) {', '.join(misplaced)} do not apply to the {backend} backend; "
                              "remove them")

    batch = {"batch_size": int(given["batch_size"])} if "batch_size" in given else {}
    if backend == "world":
        from .reference import WorldReferenceTranslator

        return WorldReferenceTranslator(**batch)

    if backend == "pivot":
        if "model" not in given:
            raise TranslatorError("the pivot backend needs config key 'model': a visual-pivoting captioner's run "
                                  "folder, checkpoints folder or export")
        from .pivot import PivotTranslator

        return PivotTranslator(given["model"], **batch, num_threads=given.get("num_threads"),
                               device=given.get("device", "cpu"), num_beams=int(given.get("num_beams", 5)),
                               max_length=given.get("max_length"))
    if "model" not in given:
        raise TranslatorError(f"the {backend} backend needs config key 'model': a local model directory "
                              "or a template like /models/opus-mt-{src}-{tgt}")
    common = dict(batch, model=given["model"], num_threads=given.get("num_threads"),
                  device=given.get("device", "cpu"),
                  language_codes=dict(given["language_codes"]) if "language_codes" in given else None)
    if backend == "hf":
        from .hf import HFTranslator

        return HFTranslator(**common, **_renamed(given, max_length="max_new_tokens",
                                                 min_length="min_new_tokens", num_beams="num_beams"))
    from .ct2 import CTranslate2Translator

    return CTranslate2Translator(**common, **_renamed(given, max_length="max_decoding_length",
                                                      min_length="min_decoding_length", num_beams="beam_size",
                                                      compute_type="compute_type"))


def _renamed(given: Mapping[str, Any], **names: str) -> dict[str, Any]:
    """The config keys present in `given`, under the backend's own argument names."""
    return {arg: given[key] for key, arg in names.items() if key in given}
