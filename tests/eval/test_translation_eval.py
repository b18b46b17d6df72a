"""Translation evaluation of the MMT model on the tiny en-de benchmark (configs/preprocess/mmt-en-de.yaml):
the segments and their references, batched and ensemble beam search, the scores against sacreBLEU's own,
the files and TensorBoard summaries written, and `dist-train eval` on an export (with --ensemble)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from dist_train.eval.embed import SplitCaptions, read_split_captions, read_split_features
from dist_train.eval.generation_metrics import java_executable
from dist_train.eval.run import translations_of
from dist_train.eval.translation import evaluate_translation, summary_line, translate, translation_pairs
from dist_train.models.beam_search import ensemble_step
from dist_train.models.mmt import MMTConfig, MMTModel
from dist_train.models.text_batch import pad_tokens
from dist_train.preprocess.vocab import load_vocab, vocab_size_of

from ..conftest import run_cli

PAD, BOS, EOS = 0, 2, 3  # the ids of every sentencepiece model `dist-train preprocess` trains
MAX_TOKENS = 24
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_ADDRESS": "", "DS_ACCELERATOR": "cpu"}
needs_java = pytest.mark.skipif(java_executable() is None, reason="METEOR needs Java")


@pytest.fixture(scope="session")
def mmt_tiny(tiny_parallel2) -> Path:
    """The tiny benchmark in en and de preprocessed for MMT (features, translated test captions; read-only)."""
    return tiny_parallel2


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_mmt(vocab: int, feature_dim: int, seed: int, visual: bool = True, **kw) -> MMTModel:
    torch.manual_seed(seed)
    config = MMTConfig(source_vocab_size=vocab, target_vocab_size=vocab, embed_dim=16, hidden_dim=16, attention_dim=16,
                       bottleneck_dim=16, visual_context=visual, feature_dim=feature_dim, pad_id=PAD, bos_id=BOS,
                       eos_id=EOS, max_len=10, **kw)
    return MMTModel(config).eval()


def write_export(model: MMTModel, folder: Path, data: Path, objective: dict) -> Path:
    """An export folder as `dist_train.train.export.export` writes it, from a model in memory."""
    from dist_train.train.engine import vocab_sha256
    from dist_train.train.export import export_config, export_tensors, write_weights

    folder.mkdir(parents=True)
    source = "runs/mmt/checkpoints/step7"
    write_weights(export_tensors(model.state_dict()), folder / "model.safetensors", source)
    shutil.copy(data / "spm.model", folder / "spm.model")
    config = export_config({"model": "mmt", "config": asdict(model.config)},
                           {"objective": objective, "data": {"max_tokens": MAX_TOKENS, "image_size": 32}}, source,
                           vocab_sha256(folder / "spm.model"))
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def setting(mmt_tiny, tmp_path_factory):
    """The test split's en->de pairs and features, two different models, and their exports."""
    vocab = vocab_size_of((mmt_tiny / "spm.model").read_bytes())
    pairs = translation_pairs(read_split_captions(mmt_tiny, "test"), "en", "de")
    features = read_split_features(mmt_tiny, "test", [p.image_id for p in pairs])
    a = tiny_mmt(vocab, features.shape[1], seed=0)
    b = tiny_mmt(vocab, 7, seed=1, visual=False)  # text-only: given the 512-d features it would fail
    root = tmp_path_factory.mktemp("mmt-exports")
    objective = {"source_language": "en", "target_language": "de", "beam_size": 3}
    exports = (write_export(a, root / "a" / "export-step7", mmt_tiny, objective),
               write_export(b, root / "b" / "export", mmt_tiny, objective))
    return pairs, features, a, b, exports


def _subset(captions: SplitCaptions, keep) -> SplitCaptions:
    keep = list(keep)
    return SplitCaptions(*[[getattr(captions, f)[i] for i in keep] for f in
                           ("keys", "tokens", "languages", "groups", "image_ids", "metas", "texts")])


def test_pairs_reference_every_target_caption_and_the_stored_translation(mmt_tiny):
    captions = read_split_captions(mmt_tiny, "test")
    pairs = translation_pairs(captions, "en", "de")
    images = list(dict.fromkeys(captions.image_ids))
    assert [p.image_id for p in pairs] == images  # every test image is captioned in en and in de
    for pair in pairs:
        rows = [i for i, image in enumerate(captions.image_ids) if image == pair.image_id]
        (en,) = [i for i in rows if captions.languages[i] == "en"]
        (de,) = [i for i in rows if captions.languages[i] == "de"]
        assert pair.source_text == captions.texts[en] and pair.source_tokens is captions.tokens[en]
        stored = translations_of(captions.metas[en])["de"]
        # the independent caption first, then the exact translation, once when they are the same sentence
        assert pair.references == list(dict.fromkeys([captions.texts[de], stored]))
    assert {len(p.references) for p in pairs} == {1, 2}  # the tiny split has both cases
    # the other direction references the English captions and the German caption's translation
    back = translation_pairs(captions, "de", "en")
    assert len(back) == len(pairs) and back[0].references[0] == pairs[0].source_text


def test_images_without_a_source_or_a_target_are_skipped_and_the_first_source_caption_is_taken(mmt_tiny):
    captions = read_split_captions(mmt_tiny, "test")
    images = list(dict.fromkeys(captions.image_ids))
    no_en = [i for i, (im, lang) in enumerate(zip(captions.image_ids, captions.languages))
             if not (im == images[0] and lang == "en")]
    no_de = [i for i in no_en if not (captions.image_ids[i] == images[1] and captions.languages[i] == "de")]
    # a second English caption of image 2 (another image's), after its own in shard order
    other_en = next(i for i, (im, lang) in enumerate(zip(captions.image_ids, captions.languages))
                    if im == images[3] and lang == "en")
    subset = _subset(captions, no_de + [other_en])
    subset.image_ids[-1] = images[2]
    pairs = translation_pairs(subset, "en", "de")
    assert [p.image_id for p in pairs] == images[2:]
    first = translation_pairs(captions, "en", "de")[2]
    assert pairs[0].source_text == first.source_text and pairs[0].references == first.references
    only_en = _subset(captions, [i for i, lang in enumerate(captions.languages) if lang == "en"])
    assert translation_pairs(only_en, "en", "de") == []
    with pytest.raises(ValueError, match="both 'en'"):
        translation_pairs(captions, "en", "en")


def test_one_model_translates_as_its_own_translate(setting):
    pairs, features, a, _, _ = setting
    sources = [p.source_tokens for p in pairs[:10]]
    got = translate([a], sources, features[:10], max_tokens=MAX_TOKENS, beam_size=3, length_penalty=1.0,
                    batch_size=4)
    src = pad_tokens(sources, MAX_TOKENS, BOS, EOS, PAD)
    assert got == a.translate(src, features[:10], beam_size=3, length_penalty=1.0).tokens
    assert any(got) and all(EOS not in t and BOS not in t and PAD not in t for t in got)


def test_an_ensemble_of_a_model_with_itself_is_the_model(setting):
    pairs, features, a, _, _ = setting
    sources = [p.source_tokens for p in pairs[:8]]
    kw = dict(max_tokens=MAX_TOKENS, beam_size=3, length_penalty=1.0, batch_size=8)
    assert translate([a, a], sources, features[:8], **kw) == translate([a], sources, features[:8], **kw)


def test_an_ensemble_decodes_the_mean_of_the_models_probabilities(setting):
    pairs, features, a, b, _ = setting
    sources = [p.source_tokens for p in pairs[:6]]
    n, max_len = len(sources), 8
    src = pad_tokens(sources, MAX_TOKENS, BOS, EOS, PAD)
    expected: list[list[int]] = [[] for _ in range(n)]
    with torch.no_grad():  # greedy by hand: argmax of log((p_a + p_b) / 2) until EOS
        state_a, state_b = a.decode_state(src, features[:6]), b.decode_state(src, None)
        last, done = torch.full((n,), BOS), [False] * n
        for _ in range(max_len):
            log_a, state_a = a.decode_step(last, state_a)
            log_b, state_b = b.decode_step(last, state_b)
            last = torch.log((log_a.exp() + log_b.exp()) / 2).argmax(dim=-1)
            for i, token in enumerate(last.tolist()):
                if not done[i]:
                    done[i] = token == EOS
                    expected[i] += [] if done[i] else [token]
    kw = dict(max_tokens=MAX_TOKENS, beam_size=1, length_penalty=1.0, max_len=max_len)
    got = translate([a, b], sources, features[:6], **kw)
    assert got == expected
    assert got != translate([a], sources, features[:6], **kw) and got != translate([b], sources, None, **kw)
    # the combinator itself: log-mean-exp of the models' log-probabilities, the tuple of their states
    with torch.no_grad():
        first = torch.full((n,), BOS)
        states = (a.decode_state(src, features[:6]), b.decode_state(src, None))
        log_probs, (sa, sb) = ensemble_step([a.decode_step, b.decode_step])(first, states)
        (log_a, _), (log_b, _) = a.decode_step(first, states[0]), b.decode_step(first, states[1])
    assert torch.allclose(log_probs.exp(), (log_a.exp() + log_b.exp()) / 2, atol=1e-7)
    assert log_probs[:, [PAD, BOS]].eq(float("-inf")).all() and "visual" in sa and "visual" not in sb


def test_an_ensemble_needs_one_vocabulary(setting):
    pairs, features, a, _, _ = setting
    other = tiny_mmt(a.config.source_vocab_size + 1, features.shape[1], seed=2)
    with pytest.raises(ValueError, match="vocab_size"):
        translate([a, other], [pairs[0].source_tokens], features[:1], max_tokens=MAX_TOKENS, beam_size=2,
                  length_penalty=1.0)


def _streams(references: list[list[str]]) -> list[list[str | None]]:
    width = max(map(len, references))
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def test_evaluation_writes_metrics_report_and_tensorboard(setting, mmt_tiny, tmp_path):
    import sacrebleu
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pairs, _, _, _, (export, _) = setting
    metrics = evaluate_translation([export], mmt_tiny, tmp_path, samples=100, meteor=java_executable() is not None)
    t = metrics["translation"]
    assert (t["pair"], t["split"], t["sentences"], t["skipped_images"]) == ("en-de", "test", len(pairs), 0)
    assert metrics["meta"]["beam_size"] == 3 and metrics["meta"]["ensemble"] == 1  # the run's objective
    assert metrics["meta"]["length_penalty"] == 1.0 and metrics["meta"]["checkpoints"] == [str(export)]
    samples = metrics["samples"]
    assert [s["references"] for s in samples] == [p.references for p in pairs]
    direct = sacrebleu.corpus_bleu([s["hypothesis"] for s in samples], _streams([p.references for p in pairs]))
    assert t["sacrebleu"] == pytest.approx(direct.score)
    assert t["sacrebleu_signature"].startswith("nrefs:var|case:mixed|") and {"bleu4", "cider", "rouge_l"} <= set(t)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    report = (tmp_path / "report.md").read_text()
    assert t["sacrebleu_signature"] in report and "| en-de | 24 |" in report and pairs[0].references[0] in report
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    (point,) = acc.Scalars("translation/sacrebleu")
    assert point.step == 7 and point.value == pytest.approx(t["sacrebleu"])
    assert "translation/en-de/text_summary" in acc.Tags()["tensors"]
    if t["meteor"] is not None:
        assert "translation/meteor" in acc.Tags()["scalars"] and "-l de" in t["meteor_modules"]
    assert summary_line(metrics).startswith(f"en->de on test ({len(pairs)} sentences): BLEU ")


@needs_java
def test_a_perfect_translation_scores_100(setting, mmt_tiny, tmp_path, monkeypatch):
    """Hypotheses that are each segment's first reference (for half of them: a non-trivial corpus)."""
    import sacrebleu

    import dist_train.eval.translation as module

    pairs, _, _, _, (export, _) = setting
    sp = load_vocab((mmt_tiny / "spm.model").read_bytes())
    perfect = [sp.encode(p.references[0]) for p in pairs]
    monkeypatch.setattr(module, "translate", lambda *args, **kw: perfect)
    metrics = evaluate_translation([export], mmt_tiny, tmp_path / "all", samples=100)
    assert [s["hypothesis"] for s in metrics["samples"]] == [p.references[0] for p in pairs]
    t = metrics["translation"]
    assert t["sacrebleu"] == pytest.approx(100.0) and t["meteor"] == pytest.approx(1.0, abs=1e-3)
    assert t["bleu4"] == pytest.approx(1.0)
    assert summary_line(metrics).startswith(f"en->de on test ({len(pairs)} sentences): BLEU 100.0, METEOR 100.0 ")
    half = [ids if i % 2 else sp.encode(p.source_text) for i, (ids, p) in enumerate(zip(perfect, pairs))]
    monkeypatch.setattr(module, "translate", lambda *args, **kw: half)
    t = evaluate_translation([export], mmt_tiny, tmp_path / "half", samples=100)["translation"]
    hyps = [sp.decode(ids) for ids in half]
    assert 10 < t["sacrebleu"] < 90
    assert t["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, _streams([p.references for p in pairs])).score)
    assert 0 < t["meteor"] < 1


def test_bad_inputs_are_one_line_value_errors(setting, mmt_tiny, tmp_path, monkeypatch):
    import dist_train.eval.embed as embed

    _, _, _, _, (export, _) = setting
    retrieval = tmp_path / "vse-export"
    retrieval.mkdir()
    (retrieval / "model.safetensors").write_bytes(b"")
    (retrieval / "config.yaml").write_text("model: vse\n")
    with pytest.raises(ValueError, match="holds a vse model, not a translation model"):
        evaluate_translation([export, retrieval], mmt_tiny, tmp_path / "out")
    with pytest.raises(ValueError, match="source language 'fr'.* de, en$"):
        evaluate_translation([export], mmt_tiny, tmp_path / "out", source="fr", meteor=False)
    captions = read_split_captions(mmt_tiny, "test")
    images = list(dict.fromkeys(captions.image_ids))
    disjoint = _subset(captions, [i for i, (im, lang) in enumerate(zip(captions.image_ids, captions.languages))
                                  if (lang == "en") == (images.index(im) % 2 == 0)])
    monkeypatch.setattr(embed, "read_split_captions", lambda root, split: disjoint)
    with pytest.raises(ValueError, match="no en->de pair in the test split"):
        evaluate_translation([export], mmt_tiny, tmp_path / "out", meteor=False)
    assert not (tmp_path / "out").exists()


def test_cli_evaluates_an_export_and_an_ensemble(setting, mmt_tiny, tmp_path):
    _, _, _, _, (export, other) = setting
    out = tmp_path / "eval"
    done = run_cli("-q", "eval", "--checkpoint", export, "--shards", mmt_tiny, "--out", out, "--beam-size", "2",
                   "--batch-size", "8", "--no-meteor", env=ENV)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("en->de on test (24 sentences): BLEU ") and "METEOR not computed" in lines[0]
    assert lines[1] == f"wrote {out}/metrics.json and {out}/report.md"
    assert json.loads((out / "metrics.json").read_text())["meta"]["beam_size"] == 2
    done = run_cli("-q", "eval", "--checkpoint", export, "--shards", mmt_tiny, "--out", tmp_path / "ens",
                   "--ensemble", f"{other},{export}", "--no-meteor", env=ENV)
    assert done.stdout.startswith("en->de on test (24 sentences, ensemble of 3): BLEU ")
    meta = json.loads((tmp_path / "ens" / "metrics.json").read_text())["meta"]
    assert meta["ensemble"] == 3 and meta["checkpoints"] == [str(export), str(other), str(export)]


def test_cli_ensemble_of_a_missing_or_non_mmt_checkpoint_fails_in_one_line(setting, mmt_tiny, tmp_path):
    _, _, _, _, (export, _) = setting
    retrieval = tmp_path / "vse-export"
    retrieval.mkdir()
    (retrieval / "model.safetensors").write_bytes(b"")
    (retrieval / "config.yaml").write_text("model: vse\n")
    cases = [(export, tmp_path / "missing", "no such checkpoint or export"),
             (export, retrieval, "holds a vse model, not a translation model (model: mmt)"),
             (retrieval, export, "only translation models (model: mmt) decode as an ensemble")]
    for checkpoint, member, message in cases:
        failed = run_cli("eval", "--checkpoint", checkpoint, "--shards", mmt_tiny, "--out", tmp_path / "out",
                         "--ensemble", member, check=False, env=ENV)
        assert failed.returncode == 2, failed.stderr
        assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
        assert failed.stderr.startswith("dist-train eval: error: ") and message in failed.stderr
    assert not (tmp_path / "out").exists()
