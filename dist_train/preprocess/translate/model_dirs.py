"""Translation models live in local directories: one for every pair, or a family of pair models.

`model` is either a directory (an NLLB/M2M100 model serves every pair, a MarianMT model one pair)
or a template such as `/models/opus-mt-{src}-{tgt}` naming one directory per language pair. Pair
models are loaded on first use and kept. Nothing here may reach the network: directories are
checked before any library sees them, and loads run with the hub switched off.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from .base import Translator, TranslatorError

Loaded = TypeVar("Loaded")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Set the Hugging Face offline switches for the duration of a load, then restore them.

    Loads also pass `local_files_only=True`; the variables cover code paths that ignore it.
    """
    saved = {key: os.environ.get(key) for key in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_template(model: str | os.PathLike) -> bool:
    return "{src}" in str(model) or "{tgt}" in str(model)


def check_model_dir(path: Path, required: str, what: str, hint: str) -> Path:
    """`path`, if it is a directory holding `required`; else a TranslatorError naming the path."""
    if not path.is_dir():
        raise TranslatorError(f"{what} model directory {path} does not exist; {hint}")
    if not (path / required).is_file():
        raise TranslatorError(f"{path} is not a {what} model directory (it has no {required}); {hint}")
    return path


class PairModels(Generic[Loaded]):
    """The model(s) behind a translator: one directory, or one per pair from a template.

    A single directory is loaded at once, so a wrong path fails when the translator is built;
    a template's directories are loaded when a pair is first asked for, and cached.
    """

    def __init__(self, model: str | os.PathLike, load: Callable[[Path], Loaded]):
        self.spec = str(model)
        self.templated = is_template(model)
        self._load = load
        self._loaded: dict[Path, Loaded] = {}
        if not self.templated:
            self._loaded[Path(model)] = load(Path(model))

    @property
    def label(self) -> str:
        """The model's directory name (or template name), for translator names."""
        return Path(self.spec.rstrip("/\\")).name

    def path_for(self, source: str, target: str) -> Path:
        if not self.templated:
            return Path(self.spec)
        return Path(self.spec.format(src=source, tgt=target))

    def exists_for(self, source: str, target: str) -> bool:
        path = self.path_for(source, target)
        return path in self._loaded or path.is_dir()

    def get(self, source: str, target: str) -> Loaded:
        path = self.path_for(source, target)
        if path not in self._loaded:
            if not path.is_dir():
                raise TranslatorError(
                    f"no model for {source}->{target}: {path} (from template {self.spec}) does not exist; "
                    "put that pair's model there or translate through a pair that has one")
            self._loaded[path] = self._load(path)
        return self._loaded[path]


class LocalModelTranslator(Translator):
    """A translator backed by `PairModels` whose loaded models carry a `LanguageTokenizer`.

    Subclasses load a directory (`_load`) and generate token ids for a batch (`generate_ids`);
    pair checks and decoding are common to both backends.
    """

    models: PairModels

    @abc.abstractmethod
    def _load(self, path: Path):
        """Load one model directory; the result has a `tokenizer` (LanguageTokenizer) attribute."""

    @abc.abstractmethod
    def generate_ids(self, texts: list[str], source: str, target: str) -> list[list[int]]:
        """Generated target token ids for one batch, without language token and end of sentence."""

    def supports(self, source: str, target: str) -> bool:
        return self._unsupported(source, target) is None

    def _unsupported(self, source: str, target: str) -> str | None:
        if not self.models.exists_for(source, target):
            return f"{self.models.path_for(source, target)} does not exist"
        return self.models.get(source, target).tokenizer.unsupported(source, target)

    def check_pair(self, source: str, target: str) -> None:
        reason = self._unsupported(source, target)
        if reason:
            raise TranslatorError(f"{self.name} cannot translate {source}->{target}: {reason}; "
                                  "choose a model that covers this pair")

    def _translate_batch(self, texts, source, target, metas):
        tokenizer = self.models.get(source, target).tokenizer
        return [tokenizer.decode(ids) for ids in self.generate_ids(texts, source, target)]
