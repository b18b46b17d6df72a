"""How each model family is told which languages to translate between.

- MarianMT (opus-mt): one model per pair, nothing to say; multi-target models (e.g. en-ROMANCE)
  want a `>>fra<<`-style token before the source text.
- NLLB: the source is prefixed with its FLORES-200 code (`eng_Latn`), the decoder is forced to
  start with the target's code.
- M2M100: the same with `__en__`-style codes built from ISO codes.

Both backends (transformers and CTranslate2) share this, so they feed their models identical
token ids and read identical ones back, which is what lets them be compared token for token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .base import TranslatorError
from .languages import flores_code, m2m100_code
from .model_dirs import hub_offline

MARIAN, NLLB, M2M100 = "marian", "nllb", "m2m100"
PAIR_IN_NAME = re.compile(r"(?:^|[-_])([a-z]{2,3})-([a-z]{2,3})$")  # opus-mt-en-de
FALLBACK_MAX_SOURCE_TOKENS = 512


def _same_language(a: str, b: str) -> bool:
    """"en" == "eng" == "en-US" for the purpose of matching a pair model's declared languages."""
    if a.lower() == b.lower():
        return True
    try:
        import langcodes

        return langcodes.Language.get(a).language == langcodes.Language.get(b).language
    except Exception:  # langcodes missing or an unparseable tag: only exact matches count
        return False


def _alpha3(language: str) -> str | None:
    try:
        import langcodes

        return langcodes.Language.get(language).to_alpha3()
    except Exception:
        return None


def detect_family(tokenizer) -> str:
    names = {cls.__name__ for cls in type(tokenizer).__mro__}
    if any(n.startswith("Marian") for n in names):
        return MARIAN
    if any(n.startswith("Nllb") for n in names):
        return NLLB
    if hasattr(tokenizer, "get_lang_id"):
        return M2M100
    raise TranslatorError(
        f"tokenizer {type(tokenizer).__name__} is not a MarianMT, NLLB or M2M100 tokenizer; "
        "only those translation model families are supported")


class LanguageTokenizer:
    """A model's tokenizer plus its family's conventions for source and target languages.

    Not thread-safe: NLLB and M2M100 tokenizers keep the source language as state.
    """

    def __init__(self, tokenizer, directory: Path | None = None, language_codes: Mapping[str, str] | None = None,
                 max_source_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.family = detect_family(tokenizer)
        self.language_codes = dict(language_codes or {})
        model_max = getattr(tokenizer, "model_max_length", None) or FALLBACK_MAX_SOURCE_TOKENS
        if model_max > 100_000:  # transformers' "unbounded" placeholder
            model_max = FALLBACK_MAX_SOURCE_TOKENS
        self.max_source_tokens = min(model_max, max_source_tokens or model_max)
        self.pair = self._declared_pair(directory)
        self.eos_id = tokenizer.eos_token_id

    @classmethod
    def load(cls, directory: Path, language_codes: Mapping[str, str] | None = None,
             max_source_tokens: int | None = None) -> "LanguageTokenizer":
        from transformers import AutoTokenizer

        with hub_offline():
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        return cls(tokenizer, directory, language_codes, max_source_tokens)

    # which pairs

    def _declared_pair(self, directory: Path | None) -> tuple[str | None, str | None]:
        """The (source, target) a Marian model was trained for: from its tokenizer config, else
        from an opus-mt style directory name; None where neither says."""
        if self.family != MARIAN:
            return None, None
        source = getattr(self.tokenizer, "source_lang", None)
        target = getattr(self.tokenizer, "target_lang", None)
        match = PAIR_IN_NAME.search(directory.name) if directory is not None else None
        if match:
            source, target = source or match.group(1), target or match.group(2)
        return source, target

    def _marian_target_token(self, target: str) -> str | None:
        codes = set(getattr(self.tokenizer, "supported_language_codes", []) or [])
        for code in (self.language_codes.get(target), target, _alpha3(target)):
            if code and f">>{code}<<" in codes:
                return f">>{code}<<"
        return None

    def _code(self, language: str) -> str:
        if self.family == NLLB:
            return flores_code(language, self.language_codes)
        return m2m100_code(language, self.language_codes)

    def _code_token(self, language: str) -> str:
        code = self._code(language)
        return self.tokenizer.get_lang_token(code) if self.family == M2M100 else code

    def _known_token(self, token: str) -> bool:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        return token_id is not None and token_id != self.tokenizer.unk_token_id

    def unsupported(self, source: str, target: str) -> str | None:
        """Why this model cannot translate source->target, or None if it can."""
        if self.family == MARIAN:
            declared_source, declared_target = self.pair
            if getattr(self.tokenizer, "supported_language_codes", None):
                if declared_source and not _same_language(source, declared_source):
                    return f"it translates from {declared_source}"
                if self._marian_target_token(target) is None:
                    return f"it has no target-language token for {target}"
                return None
            if declared_source and not _same_language(source, declared_source):
                return f"it translates {declared_source}->{declared_target}"
            if declared_target and not _same_language(target, declared_target):
                return f"it translates {declared_source}->{declared_target}"
            return None
        for language in (source, target):
            try:
                token = self._code_token(language)
            except (TranslatorError, KeyError) as err:
                return str(err)
            if not self._known_token(token):
                return f"its vocabulary has no language token {token!r} for {language}"
        return None

    # token ids in and out

    def encode(self, texts: Sequence[str], source: str, target: str) -> list[list[int]]:
        """Source token ids, language tokens and end of sentence included, truncated to the model."""
        texts = list(texts)
        if self.family == MARIAN:
            prefix = self._marian_target_token(target)
            if prefix:
                texts = [f"{prefix} {t}" for t in texts]
        else:
            self.tokenizer.src_lang = self._code(source)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_source_tokens)
        return [list(ids) for ids in encoded["input_ids"]]

    def target_prefix(self, target: str) -> str | None:
        """The token the decoder must start with (after its start symbol), if the family has one."""
        return None if self.family == MARIAN else self._code_token(target)

    def target_prefix_id(self, target: str) -> int | None:
        token = self.target_prefix(target)
        return None if token is None else self.tokenizer.convert_tokens_to_ids(token)

    def clean(self, generated: Sequence[int], target: str) -> list[int]:
        """Generated ids without the target-language token, end of sentence and padding."""
        ids = list(generated)
        prefix = self.target_prefix_id(target)
        if prefix is not None and ids and ids[0] == prefix:
            ids = ids[1:]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(ids))

    def ids(self, tokens: Sequence[str]) -> list[int]:
        return self.tokenizer.convert_tokens_to_ids(list(tokens))
