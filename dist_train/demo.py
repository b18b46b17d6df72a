"""The main job: the whole pipeline on the built-in benchmark, one stage per capability.

Kept a thin driver over the same library calls the subcommands make, so that what the demo shows
is what users run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .config import load_config
from .data.pack import PackOptions, pack, summary_table
from .data.sources.world import WorldSource
from .data.verify import verify_dataset
from .preprocess.config import PreprocessConfig, validate
from .preprocess.pipeline import preprocess
from .preprocess.pipeline import summary_table as preprocess_table

STEPS = 7
CONFIGS = Path(__file__).resolve().parent / "configs"  # shipped in the package (also the repository's configs/)
# SMALR's setting: every image captioned in each of ten languages (configs/preprocess/parallel10.yaml)
TEN_LANGUAGES = ("en", "de", "fr", "es", "it", "ru", "ar", "ja", "ko", "zh")


def run_demo(preset: str = "demo", shards_root: Path = Path("shards"), workers: int | None = None,
             progress: bool = True, runs_root: Path = Path("runs"), processes: int = 2, smalr: bool = True,
             pivot: bool = True, mmt: bool = True, stage: str = "all") -> int:
    if stage == "mmt":
        return run_mmt_stage(preset, shards_root, workers, progress, Path(runs_root), processes)
    ready = prepare_world(preset, shards_root, workers, progress, verbose=True)
    if ready is None:
        return 1
    config = CONFIGS / f"globetrotter-{preset}.yaml"
    if not config.is_file():
        print(f"no training config {config} for the {preset} preset: stopping after preprocessing")
        return 0
    run = Path(runs_root) / f"globetrotter-{preset}"
    print(f"\n[3/{STEPS}] train Globetrotter with DeepSpeed ZeRO-2 on {processes} local processes into {run}")
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "dist_train.cli", *([] if progress else ["-q"]), "train", "--config", str(config),
           "--nproc-per-node", str(processes), f"out_dir={run}", f"data.shards={ready}",
           f"deepspeed.config={CONFIGS / 'deepspeed' / 'zero2.json'}", "deepspeed.zero_stage=2"]
    if subprocess.call(cmd) != 0:
        print("training failed; rerun the demo to resume from the last checkpoint")
        return 1
    print(f"trained in {time.perf_counter() - t0:.0f}s")

    print(f"\n[4/{STEPS}] evaluate on the test split ({ready / 'test'})")
    from .eval.run import evaluate, summary_line

    metrics = evaluate(run / "checkpoints", ready, run / "eval")
    print(results_table(metrics))
    print(summary_line(metrics))
    print(f"report: {run / 'eval' / 'report.md'}; TensorBoard: tensorboard --logdir {run / 'tb'}")
    if smalr:
        code = run_smalr_stage(preset, shards_root, workers, progress, Path(runs_root), processes, image_network=run)
        if code != 0:
            return code
    if pivot:
        code = run_pivot_stage(preset, shards_root, workers, progress, Path(runs_root), processes)
        if code != 0:
            return code
    if mmt:
        return run_mmt_stage(preset, shards_root, workers, progress, Path(runs_root), processes)
    return 0


def run_mmt_stage(preset: str, shards_root: Path, workers: int | None, progress: bool, runs_root: Path,
                  processes: int) -> int:
    """Multimodal translation with adversarial reconstruction: en -> de pairs of the benchmark (the reference
    translator's), image features, Q-WAAE trained with its critic as a second DeepSpeed engine and stopped
    early on validation sacreBLEU, then sacreBLEU and METEOR of its best weights on unseen test scenes."""
    config = CONFIGS / f"mmt-{preset}.yaml"
    if not config.is_file():
        print(f"no MMT config {config} for the {preset} preset: stopping")
        return 0
    print(f"\n[7/{STEPS}] multimodal translation en -> de with adversarial reconstruction (Q-WAAE): the benchmark "
          "in en and de, every image captioned in both, image features precomputed")
    t0 = time.perf_counter()
    ready = prepare_world(preset, shards_root, workers, progress, verbose=False, languages=("en", "de"),
                          preprocess_config=CONFIGS / "preprocess" / "mmt-en-de.yaml")
    if ready is None:
        return 1
    run = runs_root / f"mmt-{preset}"
    # the config's batch of pairs is the paper's (one process): split it over the processes
    import yaml

    pairs = yaml.safe_load(config.read_text())["data"]["batch_size"] // 2
    cmd = [sys.executable, "-m", "dist_train.cli", *([] if progress else ["-q"]), "train", "--config", str(config),
           f"out_dir={run}", f"data.shards={ready}", f"deepspeed.config={CONFIGS / 'deepspeed' / 'zero2.json'}",
           f"data.batch_size={2 * max(1, pairs // processes)}", "--nproc-per-node", str(processes)]
    if subprocess.call(cmd) != 0:
        print("MMT training failed; rerun the demo to resume from the last checkpoint")
        return 1
    print(f"packed, preprocessed and trained Q-WAAE in {time.perf_counter() - t0:.0f}s into {run}")
    from .eval.translation import evaluate_translation, summary_line

    metrics = evaluate_translation([run / "best"], ready, run / "eval-test", progress=progress)
    print(summary_line(metrics))
    for sample in metrics["samples"][:3]:
        references = " | ".join(sample["references"])
        print(f"  {sample['source']}\n    -> {sample['hypothesis']}\n    references: {references}")
    print(f"report: {run / 'eval-test' / 'report.md'}; the four reconstruction forms compared: docs/results.md")
    return 0


# the built-in benchmark's task-2 preset (independent captions of every image in each language) per demo preset
PIVOT_PRESETS = {"demo": "pivot", "tiny": "pivot-tiny"}


def run_pivot_stage(preset: str, shards_root: Path, workers: int | None, progress: bool, runs_root: Path,
                    processes: int) -> int:
    """Visual pivoting: captioners in en, de and fr over one image encoder, trained on independent captions
    (no translations anywhere), then Table 1: image -> a, image + b -> a and b -> a by feedback
    propagation, beside the noise-image and retrieval baselines."""
    config = CONFIGS / f"pivot-{preset}.yaml"
    if preset not in PIVOT_PRESETS or not config.is_file():
        print(f"no visual-pivoting config {config} for the {preset} preset: stopping")
        return 0
    world = PIVOT_PRESETS[preset]
    print(f"\n[6/{STEPS}] visual pivoting: the benchmark with independent captions of every image in each "
          f"language ({world}), one captioner per language over one image encoder")
    t0 = time.perf_counter()
    ready = prepare_world(world, shards_root, workers, progress, verbose=False)
    if ready is None:
        return 1
    run = runs_root / f"pivot-{preset}"
    cmd = [sys.executable, "-m", "dist_train.cli", *([] if progress else ["-q"]), "train", "--config", str(config),
           "--nproc-per-node", str(processes), f"out_dir={run}", f"data.shards={ready}",
           f"deepspeed.config={CONFIGS / 'deepspeed' / 'zero2.json'}"]
    if subprocess.call(cmd) != 0:
        print("captioner training failed; rerun the demo to resume from the last checkpoint")
        return 1
    print(f"packed, preprocessed and trained the captioners in {time.perf_counter() - t0:.0f}s into {run}")
    from .eval.pivot import evaluate_pivot, table_markdown

    t0 = time.perf_counter()
    metrics = evaluate_pivot(run / "checkpoints", ready, run / "eval", pairs=[("en", "de")], progress=progress)
    for result in metrics["pivot"]:
        print(f"{result['pair'][0]} and {result['pair'][1]}, {result['images']} test images (scores x100):")
        print(table_markdown(result))
    print(f"evaluated in {time.perf_counter() - t0:.0f}s; report: {run / 'eval' / 'report.md'}")
    return 0


def run_smalr_stage(preset: str, shards_root: Path, workers: int | None, progress: bool, runs_root: Path,
                    processes: int, image_network: Path | None = None) -> int:
    """SMALR on the benchmark in ten languages, every image captioned in each (translated by the
    reference translator, with precomputed image features): image-text mean recall per language,
    with Cross-Lingual Consistency. `image_network`: a run whose image network extracts the features
    (the demo's Globetrotter run, the benchmark's stand-in for ImageNet weights); None: a seeded random ResNet-18."""
    import json

    config = CONFIGS / f"smalr-{preset}.yaml"
    if not config.is_file():
        print(f"no SMALR config {config} for the {preset} preset: stopping")
        return 0
    features = f"by the image network of {image_network}" if image_network else "by a random ResNet-18"
    print(f"\n[5/{STEPS}] SMALR: the benchmark in {len(TEN_LANGUAGES)} languages, every image captioned in each, "
          f"image features precomputed {features}")
    t0 = time.perf_counter()
    ready = prepare_world(preset, shards_root, workers, progress, verbose=False, languages=TEN_LANGUAGES,
                          preprocess_config=CONFIGS / "preprocess" / "parallel10.yaml",
                          overrides=(f"features.checkpoint={image_network}",) if image_network else (),
                          suffix="-globetrotter-features" if image_network else "")
    if ready is None:
        return 1
    print(f"packed, translated and preprocessed into {ready} in {time.perf_counter() - t0:.0f}s")
    run = runs_root / f"smalr-{preset}"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "dist_train.cli", *([] if progress else ["-q"]), "train", "--config", str(config),
           "--nproc-per-node", str(processes), f"out_dir={run}", f"data.shards={ready}",
           f"deepspeed.config={CONFIGS / 'deepspeed' / 'zero2.json'}"]
    if subprocess.call(cmd) != 0:
        print("SMALR training failed; rerun the demo to resume from the last checkpoint")
        return 1
    print(f"trained SMALR in {time.perf_counter() - t0:.0f}s into {run}")
    evaluations = sorted((run / "eval").glob("smalr_step*.json"))
    if not evaluations:
        print(f"no evaluation in {run / 'eval'}")
        return 1
    print(smalr_table(json.loads(evaluations[-1].read_text())))
    return 0


def smalr_table(result: dict) -> str:
    """Mean recall per language: SMALR's own query, CLC-A and CLC-C, and the averages A, beside chance."""
    methods = [("", "SMALR"), ("_clc_a", "CLC-A"), ("_clc_c", "CLC-C")]
    methods = [(key, name) for key, name in methods if f"mean_recall{key}" in result]
    lines = [f"{'language':<10}" + "".join(f"{name:>8}" for _, name in methods)]
    for lang in sorted(result["mean_recall"]):
        lines.append(f"{lang:<10}" + "".join(f"{result[f'mean_recall{key}'][lang]:>8.1f}" for key, _ in methods))
    lines.append(f"{'A':<10}" + "".join(f"{result[f'average_mean_recall{key}']:>8.2f}" for key, _ in methods)
                 + f"   (chance {result['average_mean_recall_chance']:.2f})")
    params = result.get("parameters", {})
    if params:
        lines.append(f"embedding parameters {params.get('embedding_total', 0):,} (one full vocabulary per language with "
                     f"the same word vectors: {params.get('embedding_full_vocabulary_per_language', 0):,})")
    return "\n".join(lines)


def results_table(metrics: dict) -> str:
    """Sentence translation from each language (mean over targets) beside chance, and the totals: among
    the other languages' sentences (the headline), and pooled with the query's own language."""
    st = metrics["sentence_translation"]
    pairs = st["by_language_pair"]
    lines = [f"{'query language':<24} {'translation %':>14} {'chance %':>9}"]
    for i, lang in enumerate(pairs["languages"]):
        values = [v for v in pairs["value"][i] if v is not None]
        chances = [c for c in pairs["chance"][i] if c is not None]
        if values:
            lines.append(f"{lang:<24} {sum(values) / len(values):>14.1f} {sum(chances) / len(chances):>9.1f}")
    overall, disjoint = st["retrieved_positives"], st["disjoint_script_pairs"]
    lines.append(f"{'all pairs':<24} {overall['value']:>14.1f} {overall['chance']:>9.1f}")
    if disjoint["value"] is not None:
        lines.append(f"{'disjoint scripts':<24} {disjoint['value']:>14.1f} {disjoint['chance']:>9.1f}")
    pooled = metrics.get("sentence_translation_pooled")
    if pooled is not None:
        for name, fig in (("all pairs", pooled["retrieved_positives"]), ("disjoint scripts", pooled["disjoint_script_pairs"])):
            if fig["value"] is not None:
                lines.append(f"{name + ', pooled':<24} {fig['value']:>14.1f} {fig['chance']:>9.1f}   "
                             "(candidates include the query's own language)")
    own = metrics.get("bitext_retrieval", {}).get("own_language_neighbours")
    if own is not None and own["value"] is not None:
        lines.append(f"{'own-language share':<24} {own['value']:>14.1f} {own['chance']:>9.1f}   "
                     "(of each query's top M-1 neighbours, all languages pooled)")
    return "\n".join(lines)


def prepare_world(preset: str, shards_root: Path = Path("shards"), workers: int | None = None,
                  progress: bool = True, verbose: bool = False, languages: tuple[str, ...] | None = None,
                  preprocess_config: Path | None = None, overrides: tuple[str, ...] = (),
                  suffix: str = "") -> Path | None:
    """Pack and preprocess the built-in benchmark (each step skipped when already done); returns the
    training-ready dataset folder, or None when the packed shards fail verification. `languages` packs
    a subset (its folders get a `-parallel<N>` suffix); `preprocess_config` replaces the defaults,
    `overrides` (key=value) apply on top, and `suffix` names the preprocessed folder apart."""
    name = f"world-{preset}" + (f"-parallel{len(languages)}" if languages else "")
    packed = Path(shards_root) / "packed" / name
    ready = Path(shards_root) / (name + suffix)
    say = print if verbose else (lambda *a, **k: None)
    say(f"[1/{STEPS}] pack the built-in benchmark ({preset}) into {packed}")
    t0 = time.perf_counter()
    source = WorldSource(preset, **({"languages": tuple(languages)} if languages else {}))
    options = PackOptions(max_samples_per_shard=source.spec.samples_per_shard, progress=progress,
                          **({"workers": workers} if workers is not None else {}))
    summary = pack(source, packed, options)
    report = verify_dataset(packed, progress=False)
    if not report.ok:
        for s in report.bad_shards:
            print(f"FAIL {s.path}: {s.problems}")
        return None
    say(summary_table(summary, packed))
    say(f"verified {len(report.shards)} shards in {time.perf_counter() - t0:.1f}s; "
        f"look at samples with: dist-train shards inspect {packed} --split test -n 14")

    say(f"\n[2/{STEPS}] preprocess with Ray into {ready} (normalise, shared vocabulary, tokens)")
    t0 = time.perf_counter()
    # None: configs/preprocess/default.yaml with the preset's vocabulary size
    if preprocess_config is None and source.spec.vocab_size:
        overrides = (f"vocab.size={source.spec.vocab_size}", *overrides)
    cfg = load_config(PreprocessConfig, preprocess_config, overrides, validate)
    pre = preprocess(packed, ready, cfg, progress=progress)
    say(preprocess_table(pre, ready))
    say(f"preprocessed in {time.perf_counter() - t0:.1f}s")
    return ready
