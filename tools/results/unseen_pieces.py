"""How much of each language's test text the vocabulary makes unseen: the share of test tokens (pieces) that
never occur in that language's training captions, and in any training caption.

    python tools/results/unseen_pieces.py shards/world-demo [OTHER_DATASET ...]
"""

from __future__ import annotations

import collections
import sys

from dist_train.eval.embed import read_split_captions


def main() -> int:
    for root in sys.argv[1:]:
        train, test = read_split_captions(root, "train"), read_split_captions(root, "test")
        seen: dict[str, set[int]] = collections.defaultdict(set)
        for tokens, lang in zip(train.tokens, train.languages):
            seen[lang].update(map(int, tokens))
        anywhere = set().union(*seen.values())
        total: collections.Counter = collections.Counter()
        own: collections.Counter = collections.Counter()
        anyw: collections.Counter = collections.Counter()
        for tokens, lang in zip(test.tokens, test.languages):
            for t in map(int, tokens):
                total[lang] += 1
                own[lang] += t not in seen[lang]
                anyw[lang] += t not in anywhere
        cells = ", ".join(f"{lang} {100 * own[lang] / total[lang]:.1f} / {100 * anyw[lang] / total[lang]:.1f}"
                          for lang in sorted(total))
        print(f"{root}: % of test tokens unseen in the language's / in any training captions: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
