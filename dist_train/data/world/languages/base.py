"""The interface every language of the built-in benchmark implements."""

from __future__ import annotations

import abc

from ..meaning import Meaning

# Every language offers the same four templates, so one template index means the same
# construction everywhere (useful for tests and for reading captions side by side):
#   0  noun phrase:          "two small red circles to the left of a big blue square"
#   1  sentence:             "Two small red circles are to the left of a big blue square."
#   2  inverted sentence:    "A big blue square is to the right of two small red circles."
#   3  existential sentence: "There are two small red circles to the left of a big blue square."
N_TEMPLATES = 4


class Captioner(abc.ABC):
    """Turns a `Meaning` into a grammatical caption in one language."""

    code: str  # BCP-47 / ISO 639-1 code, e.g. "ru"
    name: str  # English name, e.g. "Russian"
    scripts: frozenset[str]  # ISO 15924 codes of the scripts the captions are written in
    n_templates: int = N_TEMPLATES

    @abc.abstractmethod
    def caption(self, meaning: Meaning, template: int) -> str:
        """The caption of `meaning` with construction `template` (0 <= template < N_TEMPLATES)."""

    def _check_template(self, template: int) -> None:
        if not 0 <= template < self.n_templates:
            raise ValueError(f"{self.code}: template must be in [0, {self.n_templates}), got {template}")
