"""What a built-in benchmark caption says: two groups of shapes and where one is relative to the other.

A `Meaning` is the language-independent content of a caption. Every language's captioner turns
the same `Meaning` into a sentence, so captions of one scene in different languages are exact
translations of each other; the test split relies on that for translation by retrieval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow", "white", "black")
SIZES = ("small", "big")
COUNTS = (1, 2, 3)
RELATIONS = ("left_of", "right_of", "above", "below")
INVERSE_RELATION = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Group:
    """`count` identical objects of one size, colour and shape."""

    count: int
    size: str
    colour: str
    shape: str

    def __post_init__(self) -> None:
        if self.count not in COUNTS:
            raise ValueError(f"count must be one of {COUNTS}, got {self.count!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")


@dataclass(frozen=True)
class Meaning:
    """`subject` stands in `relation` to `obj`: "two small red circles to the left of a big blue square"."""

    subject: Group
    relation: str
    obj: Group

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
        if self.subject == self.obj:
            raise ValueError("subject and object groups must differ")

    def inverted(self) -> "Meaning":
        """The same fact told from the object's side ("a big blue square to the right of ...")."""
        return Meaning(self.obj, INVERSE_RELATION[self.relation], self.subject)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Meaning":
        return cls(Group(**d["subject"]), d["relation"], Group(**d["obj"]))


def all_groups() -> list[Group]:
    return [Group(c, s, col, sh) for c in COUNTS for s in SIZES for col in COLOURS for sh in SHAPES]


@lru_cache(maxsize=1)
def all_meanings() -> tuple[Meaning, ...]:
    """Every caption meaning the benchmark can produce, in a fixed order."""
    groups = all_groups()
    return tuple(Meaning(a, r, b) for a in groups for r in RELATIONS for b in groups if a != b)
