"""`dist-train preprocess`: packed shards in, training-ready shards out, as a Ray Data pipeline.

    input shards -> read + clean (tasks) -> translate (actor pool) -> image features (actor pool)
                 -> tokenise + write (tasks) -> per-shard results streamed to the driver

Before the main pass, the shared sentencepiece vocabulary is trained on the captions of
`vocab.splits` (a Ray pass that collects them, then the trainer on the driver). State lives next to
the output (`OUT/_preprocess/`), so a rerun skips the vocabulary and every finished shard.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from dist_train.config import apply_storage_options, to_dict, without_storage_secrets
from dist_train.data.card import finish_dataset
from dist_train.data.shards import (REJECTS_SCHEMA, atomic_write_bytes, atomic_write_json, atomic_write_parquet,
                                    list_finished_shards, manifest_path, read_manifest, read_parquet, read_shard_info,
                                    rejects_table, remove_stale_files, split_names)
from dist_train.preprocess.config import PreprocessConfig
from dist_train.preprocess.stages import (FeatureStage, TranslateStage, collect_captions,
                                          read_and_clean, rejects_path, state_dir, stats_path, tokenize_and_write)
from dist_train.preprocess.work import ShardWork
from dist_train.storage import is_remote, location, makedirs

log = logging.getLogger(__name__)

SUMMARY_FORMAT = "dist_train.shards/1"
VOCAB_FILE = "spm.model"


class PreprocessError(RuntimeError):
    """The input or the output folder cannot be used as asked; the message says why."""


# --- Ray set-up ----------------------------------------------------------------------------------------


# Ray's single-machine mode (its default on macOS and Windows): the node's address is 127.0.0.1, so
# the GCS, the raylet, the object manager, every worker's gRPC server and the runtime-env agent listen
# on loopback only. On Linux Ray otherwise binds them on all interfaces, and `_node_ip_address`
# cannot help: ray.init rewrites 127.0.0.1 to the host's reachable address.
RAY_SINGLE_MACHINE_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def _ray_on_loopback() -> Iterator[None]:
    """A local Ray started inside listens on 127.0.0.1 only (unless the user set the variable); restored after."""
    import os

    from ray._private import ray_constants

    if RAY_SINGLE_MACHINE_VAR in os.environ:
        yield
        return
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)  # a private constant: may go in another version
    os.environ[RAY_SINGLE_MACHINE_VAR] = "0"  # for Ray's processes, started inside
    if saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False  # this process read the variable when it imported ray
    try:
        yield
    finally:
        os.environ.pop(RAY_SINGLE_MACHINE_VAR, None)
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved


@contextmanager
def ray_session(cfg: PreprocessConfig, progress: bool) -> Iterator[None]:
    """Join `ray.address` or start a local Ray (on loopback only); shut it down afterwards only if we started it."""
    from contextlib import ExitStack

    import ray
    from ray.data import DataContext

    with ExitStack() as stack:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if cfg.ray.address:
                kwargs["address"] = cfg.ray.address
            else:
                from dist_train.data.pack import available_cpus

                # "local" always starts a new Ray: a bare ray.init() would join whatever cluster a
                # `ray start` on this machine left behind in /tmp/ray.
                kwargs["address"] = "local"
                stack.enter_context(_ray_on_loopback())
                kwargs["num_cpus"] = cfg.ray.num_cpus or available_cpus()
                if cfg.ray.object_store_memory:
                    kwargs["object_store_memory"] = cfg.ray.object_store_memory
            ray.init(**kwargs)
            stack.callback(ray.shutdown)  # runs before the loopback setting is restored
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = progress
        yield


def _check_resources(cfg: PreprocessConfig) -> None:
    """Actor pools must leave CPUs for the read and write tasks, or the pipeline waits for ever."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    reserved = 0.0
    for name in ("translate", "features"):
        stage = getattr(cfg, name)
        if stage.enabled:
            reserved += stage.num_cpus * stage.concurrency
    if cpus and reserved + cfg.ray.task_num_cpus > cpus:
        raise PreprocessError(
            f"the actor pools reserve {reserved:g} of the cluster's {cpus:g} CPUs and a read/write task needs "
            f"{cfg.ray.task_num_cpus:g}: lower translate/features num_cpus or concurrency"
        )


# --- inputs, state and resume --------------------------------------------------------------------------


def _input_shards(in_dir: Path) -> dict[str, list[Path]]:
    if not in_dir.is_dir():
        raise PreprocessError(f"input folder not found: {in_dir}")
    shards = {split: list_finished_shards(in_dir, split) for split in split_names(in_dir)}
    shards = {split: tars for split, tars in shards.items() if tars}
    if not shards:
        raise PreprocessError(f"{in_dir} holds no finished shards (expected {in_dir}/<split>/<split>-NNNNNN.tar "
                              "with manifests, as written by dist-train pack)")
    return shards


def _check_state(in_dir: Path, out: Path, cfg: PreprocessConfig) -> None:
    """A rerun must use the same input and settings, or finished shards would mix two recipes."""
    settings = {"input": _fingerprint(in_dir), "config": _recipe(cfg)}
    path = state_dir(out) / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != settings:
            changed = _diff(previous, settings)
            if previous.get("input") != settings["input"]:
                changed.insert(0, "the input shards differ")
            raise PreprocessError(
                f"{out} was written from other input or settings ({'; '.join(changed[:5])}); "
                "use another --out, or delete it to start again"
            )
        return
    makedirs(state_dir(out))
    atomic_write_json(path, settings)


def _fingerprint(in_dir: Path) -> str:
    """The input's identity: its shards' names and checksums (so a moved or copied input still matches)."""
    import hashlib

    digest = hashlib.sha256()
    for split, tars in sorted(_input_shards(in_dir).items()):
        for tar in tars:
            digest.update(f"{split}/{tar.name}:{read_shard_info(manifest_path(tar)).sha256};".encode())
    return digest.hexdigest()


def _recipe(cfg: PreprocessConfig) -> dict[str, Any]:
    """The settings that change the output (not where or how fast it runs)."""
    recipe = to_dict(cfg)
    recipe.pop("ray")
    recipe.pop("storage_options", None)
    for stage in ("translate", "features"):
        for key in ("num_cpus", "num_gpus", "concurrency", "num_threads", "device", "batch_size"):
            recipe[stage].pop(key, None)
    return recipe


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def _augment_plan(shards: dict[str, list[Path]], cfg: PreprocessConfig) -> dict[str, dict[str, list[str]]]:
    """For each image of the augmented splits, the one caption to translate and the languages it lacks.

    Decided over the whole split from the manifests (an image's captions may sit in several shards).
    The source caption is the first in input order in the first available of `source_languages`
    (any language when that list is empty); images with no caption in those languages are left as they are.
    """
    t = cfg.translate
    if not (t.enabled and t.augment_splits):
        return {}
    wanted = list(dict.fromkeys(t.augment_languages))
    preference = {lang: rank for rank, lang in enumerate(t.source_languages)}
    plans: dict[str, dict[str, list[str]]] = {}
    for split in t.augment_splits:
        if split not in shards:
            raise PreprocessError(f"translate.augment_splits names {split!r}, which the input does not have "
                                  f"(it has {sorted(shards)})")
        present: dict[str, set[str]] = collections.defaultdict(set)
        best: dict[str, tuple] = {}
        for tar in shards[split]:
            table = read_manifest(manifest_path(tar), ["image_id", "caption_id", "language", "input_index"])
            for image_id, caption_id, lang, index in zip(*(table.column(c).to_pylist() for c in table.column_names)):
                present[image_id].add(lang)
                if preference and lang not in preference:
                    continue  # only the named source languages are translated from
                rank = (preference.get(lang, len(preference)), index)
                if image_id not in best or rank < best[image_id][0]:
                    best[image_id] = (rank, caption_id)
        plan: dict[str, list[str]] = {}
        for image_id, (_, caption_id) in best.items():
            missing = [lang for lang in wanted if lang not in present[image_id]]
            if missing:
                plan[caption_id] = missing
        plans[split] = plan
    return plans


def _tasks(shards: dict[str, list[Path]], out: Path, cfg: PreprocessConfig) -> tuple[list[dict], int]:
    """The input shards whose output shard is not finished yet, as rows of the Ray dataset."""
    plans = _augment_plan(shards, cfg)
    t = cfg.translate
    tasks = []
    done = 0
    for split, tars in shards.items():
        finished = {p.name for p in list_finished_shards(out, split)}
        remove_stale_files(out / split, [out / split / name for name in finished])
        plan = plans.get(split, {})
        for tar in tars:
            if tar.name in finished:
                done += 1
                continue
            info = read_shard_info(manifest_path(tar))
            keys = set(read_manifest(manifest_path(tar), ["caption_id"]).column("caption_id").to_pylist())
            work = ShardWork(
                split=split, index=int(tar.stem.rsplit("-", 1)[1]), input_tar=str(tar),
                input_start=info.input_start, input_end=info.input_end,
                augment_plan={cid: langs for cid, langs in plan.items() if cid in keys},
                query_languages=list(t.query_languages) if (t.enabled and split in t.query_splits) else [],
            )
            tasks.append({"shard": tar.name, "payload": work.dumps()})
    return tasks, done


# --- the vocabulary ------------------------------------------------------------------------------------


def _ensure_vocab(shards: dict[str, list[Path]], out: Path, cfg: PreprocessConfig) -> bytes | None:
    from dist_train.preprocess.vocab import balanced_sample, check_vocab, train_vocab, vocab_size_of

    if not cfg.vocab.enabled:
        return None
    path = out / VOCAB_FILE
    if path.exists():
        return path.read_bytes()
    if cfg.vocab.model:
        source = Path(cfg.vocab.model)
        if not source.is_file():
            raise PreprocessError(f"vocab.model: file not found: {source}")
        proto = source.read_bytes()
        try:
            check_vocab(proto)
        except ValueError as exc:
            raise PreprocessError(f"vocab.model {source}: {exc}") from None
        atomic_write_bytes(path, proto)
        atomic_write_json(state_dir(out) / "vocab.json", {"copied_from": str(source), "size": vocab_size_of(proto)})
        return proto
    import ray

    missing = [s for s in cfg.vocab.splits if s not in shards]
    if missing:
        raise PreprocessError(f"vocab.splits names {missing}, which the input does not have (it has {sorted(shards)})")
    items = [{"input_tar": str(tar)} for split in cfg.vocab.splits for tar in shards[split]]
    started = time.time()
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map(
        _captions_row, fn_kwargs={"normalize": cfg.captions.normalize}, num_cpus=cfg.ray.task_num_cpus)
    captions: dict[str, list[str]] = collections.defaultdict(list)
    for row in ds.iter_rows():
        for lang, texts in json.loads(row["captions"]).items():
            captions[lang].extend(texts)
    sentences, quotas = balanced_sample(captions, cfg.vocab.temperature, cfg.vocab.max_sentences, cfg.vocab.seed)
    from dist_train.data.pack import available_cpus

    proto = train_vocab(sentences, cfg.vocab.size, cfg.vocab.model_type, cfg.vocab.character_coverage,
                        cfg.vocab.seed, num_threads=available_cpus())
    atomic_write_bytes(path, proto)
    info = {
        "size": vocab_size_of(proto), "requested_size": cfg.vocab.size, "model_type": cfg.vocab.model_type,
        "splits": list(cfg.vocab.splits), "temperature": cfg.vocab.temperature,
        "captions": {lang: len(texts) for lang, texts in sorted(captions.items())},
        "sampled": quotas, "seconds": round(time.time() - started, 2),
    }
    atomic_write_json(state_dir(out) / "vocab.json", info)
    log.info("vocabulary: %d pieces from %d sentences in %d languages", info["size"], len(sentences), len(quotas))
    return proto


def _captions_row(row: dict[str, Any], normalize: bool) -> dict[str, Any]:
    return {"captions": json.dumps(collect_captions(row, normalize), ensure_ascii=False)}


# --- the main pass -------------------------------------------------------------------------------------


def _stage_fn(stage_cls):
    """A Ray Data callable class running a stage on the one shard of each batch (batch_size=1)."""

    class _Stage:
        def __init__(self, config: dict[str, Any]):
            self.stage = stage_cls(config)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            payloads = [self.stage(ShardWork.loads(p)).dumps() for p in batch["payload"]]
            return {"shard": list(batch["shard"]), "payload": payloads}

    _Stage.__name__ = stage_cls.__name__
    _Stage.__qualname__ = stage_cls.__name__
    return _Stage


TranslateActor = _stage_fn(TranslateStage)
FeatureActor = _stage_fn(FeatureStage)


def _clean_row(row: dict[str, Any], images: dict, captions: dict) -> dict[str, Any]:
    work = read_and_clean(ShardWork.loads(row["payload"]), images, captions)
    return {"shard": row["shard"], "payload": work.dumps()}


def _write_row(row: dict[str, Any], out: str, vocab_proto: bytes | None) -> dict[str, Any]:
    return tokenize_and_write(ShardWork.loads(row["payload"]), out, vocab_proto)


def build_dataset(tasks: list[dict], out: Path, cfg: PreprocessConfig, vocab_proto: bytes | None):
    """The Ray Data pipeline over the unfinished shards (lazy until iterated)."""
    import ray

    conf = to_dict(cfg)
    ds = ray.data.from_items(tasks, override_num_blocks=max(1, len(tasks)))
    ds = ds.map(_clean_row, fn_kwargs={"images": conf["images"], "captions": conf["captions"]},
                num_cpus=cfg.ray.task_num_cpus)
    for name, actor in (("translate", TranslateActor), ("features", FeatureActor)):
        stage = getattr(cfg, name)
        if stage.enabled:
            ds = ds.map_batches(actor, batch_size=1, fn_constructor_kwargs={"config": conf[name]},
                                compute=ray.data.ActorPoolStrategy(size=stage.concurrency),
                                num_cpus=stage.num_cpus, num_gpus=stage.num_gpus)
    ds = ds.map(_write_row, fn_kwargs={"out": str(out), "vocab_proto": vocab_proto if cfg.tokenize.enabled else None},
                num_cpus=cfg.ray.task_num_cpus)
    return ds


def checkpoint_image_network(checkpoint: str | Path, out: Path) -> tuple[str, str]:
    """(arch, weights file) of the image network of a dist-train run, written once into OUT's state folder so
    that every feature actor loads a plain weights file instead of a DeepSpeed checkpoint."""
    from safetensors.torch import save

    from dist_train.train.export import load_model

    weights = state_dir(out) / "image_network.safetensors"
    try:
        model, config = load_model(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise PreprocessError(f"features.checkpoint: {exc}") from None
    network = getattr(model, "image_encoder", None)
    if network is None:
        raise PreprocessError(f"features.checkpoint: the {config.get('model')} model of {checkpoint} has no image network")
    arch = config["model_config"].get("image_arch", "resnet18")
    if not weights.is_file():
        atomic_write_bytes(weights, save({k: v.contiguous() for k, v in network.state_dict().items()}))
    return arch, str(weights)


def preprocess(in_dir: str | Path, out: str | Path, cfg: PreprocessConfig, progress: bool = True) -> dict[str, Any]:
    """Run the pipeline from the packed dataset `in_dir` into `out`; returns (and writes) the summary."""
    apply_storage_options(cfg)
    in_dir, out = location(in_dir), location(out)
    if str(in_dir if is_remote(in_dir) else in_dir.resolve()) == str(out if is_remote(out) else out.resolve()):
        raise PreprocessError("--in and --out must be different folders")
    shards = _input_shards(in_dir)
    for name in ("augment_splits", "query_splits"):
        for split in getattr(cfg.translate, name) if cfg.translate.enabled else []:
            if split not in shards:
                raise PreprocessError(f"translate.{name} names {split!r}, which the input does not have "
                                      f"(it has {sorted(shards)})")
    if cfg.translate.enabled and cfg.translate.backend != "world" and cfg.translate.model:
        model = cfg.translate.model
        probe = Path(model.replace("{src}", "*").replace("{tgt}", "*"))
        if "{src}" not in model and not probe.exists():
            raise PreprocessError(f"translate.model: model directory not found: {model} (models are loaded from "
                                  "local folders only)")
    if cfg.features.enabled and cfg.features.weights and not Path(cfg.features.weights).is_file():
        raise PreprocessError(f"features.weights: file not found: {cfg.features.weights}")
    if cfg.features.enabled and cfg.features.checkpoint:
        if cfg.features.weights:
            raise PreprocessError("features.checkpoint and features.weights both name the image network: give one")
        if not Path(cfg.features.checkpoint).exists():
            raise PreprocessError(f"features.checkpoint: not found: {cfg.features.checkpoint}")
    makedirs(out)
    _check_state(in_dir, out, cfg)
    if cfg.features.enabled and cfg.features.checkpoint:
        cfg.features.arch, cfg.features.weights = checkpoint_image_network(cfg.features.checkpoint, out)
    started = time.time()
    tasks, already = _tasks(shards, out, cfg)
    log.info("%d shards to do, %d already finished", len(tasks), already)
    needs_vocab = cfg.vocab.enabled and not (out / VOCAB_FILE).exists()
    if tasks or needs_vocab:
        with ray_session(cfg, progress):
            _check_resources(cfg)
            vocab_proto = _ensure_vocab(shards, out, cfg)
            if tasks:
                _run(tasks, out, cfg, vocab_proto, progress)
    summary = summarize(in_dir, out, cfg, sorted(shards), seconds=time.time() - started)
    atomic_write_json(out / "summary.json", summary)
    finish_dataset(out, summary, "dist-train preprocess")  # sizes.json, <split>.parquet and the dataset card
    return summary


def _run(tasks: list[dict], out: Path, cfg: PreprocessConfig, vocab_proto: bytes | None, progress: bool) -> None:
    from tqdm import tqdm

    ds = build_dataset(tasks, out, cfg, vocab_proto)
    with tqdm(total=len(tasks), unit="shard", desc="preprocess", disable=not progress) as bar:
        written = 0
        for result in ds.iter_rows():
            written += result["written"]
            bar.set_postfix(samples=written)
            bar.update(1)


# --- the summary ---------------------------------------------------------------------------------------


STAGE_ORDER = ("read", "images", "captions", "translate", "features", "tokenize", "write")


def _ordered(stages: dict) -> dict:
    return {k: stages[k] for k in sorted(stages, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else 99)}


def _merge_stages(into: dict, stages: dict) -> None:
    for stage, per_lang in stages.items():
        for lang, counts in per_lang.items():
            slot = into.setdefault(stage, {}).setdefault(lang, collections.Counter())
            slot.update(counts)


def _stage_totals(stages: dict) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for stage, per_lang in stages.items():
        c: collections.Counter = collections.Counter()
        for counts in per_lang.values():
            c.update(counts)
        totals[stage] = dict(c)
    return totals


def summarize(in_dir: Path, out: Path, cfg: PreprocessConfig, splits: list[str], seconds: float = 0.0) -> dict[str, Any]:
    """Counts from what is on disk (manifests, per-shard stage counts and reject tables); checks that
    for every split, rows read + translations made = rows written + rows rejected."""
    per_split: dict[str, Any] = {}
    all_rejects = []
    totals = collections.Counter()
    total_languages: collections.Counter = collections.Counter()
    all_stages: dict = {}
    source_errors: list[dict] = []
    notes: dict[str, Any] = {}
    for split in splits:
        shards = list_finished_shards(out, split)
        languages: collections.Counter = collections.Counter()
        origins: collections.Counter = collections.Counter()
        stages: dict = {}
        read = written = rejected = tar_bytes = 0
        for tar in shards:
            index = int(tar.stem.rsplit("-", 1)[1])
            info = read_shard_info(manifest_path(tar))
            table = read_manifest(manifest_path(tar), ["language", "origin"])
            languages.update(table.column("language").to_pylist())
            origins.update(table.column("origin").to_pylist())
            stats = json.loads(stats_path(out, split, index).read_text())
            read += stats["read"]
            written += info.num_samples
            rejected += stats["rejected"]
            tar_bytes += info.tar_bytes
            _merge_stages(stages, stats["stages"])
            source_errors += stats["source_errors"]
            notes.update(stats.get("notes", {}))
            all_rejects.append(rejects_table(read_parquet(rejects_path(out, split, index))))
        added = sum(c.get("out", 0) + c.get("rejected", 0) for c in stages.get("translate", {}).values())
        if read + added != written + rejected:
            raise PreprocessError(f"internal error: {split}: read {read} + translated {added} != "
                                  f"written {written} + rejected {rejected}")
        _merge_stages(all_stages, stages)
        reasons = collections.Counter()
        for table in all_rejects[-len(shards):] if shards else []:
            reasons.update(table.column("reason").to_pylist())
        per_split[split] = {
            "shards": len(shards), "read": read, "translated": added, "written": written, "rejected": rejected,
            "tar_bytes": tar_bytes, "languages": dict(sorted(languages.items())),
            "origins": dict(sorted(origins.items())), "rejects": dict(sorted(reasons.items())),
            "stages": _stage_totals(_ordered(stages)),
        }
        totals.update({"read": read, "translated": added, "written": written, "rejected": rejected})
        total_languages.update(languages)
    rejects = pa.concat_tables(all_rejects) if all_rejects else REJECTS_SCHEMA.empty_table()
    atomic_write_parquet(out / "rejects.parquet", rejects)
    input_summary = in_dir / "summary.json"
    vocab_info = state_dir(out) / "vocab.json"
    return {
        "format": SUMMARY_FORMAT,
        "source": json.loads(input_summary.read_text()).get("source") if input_summary.exists() else None,
        "input": str(in_dir),
        "preprocess": {
            "config": without_storage_secrets(to_dict(cfg)),
            "vocab": json.loads(vocab_info.read_text()) if vocab_info.exists() else None,
            "translator": notes.get("translator"),
            "features": notes.get("features"),
            "stages": {stage: {lang: dict(c) for lang, c in sorted(per_lang.items())}
                       for stage, per_lang in _ordered(all_stages).items()},
            "seconds": round(seconds, 2),
        },
        "splits": per_split,
        "totals": {**{k: totals.get(k, 0) for k in ("read", "translated", "written", "rejected")},
                   "languages": dict(sorted(total_languages.items())),
                   "rejects": dict(sorted(collections.Counter(rejects.column("reason").to_pylist()).items()))},
        "source_errors": source_errors,
    }


def summary_table(summary: dict[str, Any], out: Path) -> str:
    """Rows in, out and rejected per split and stage, then per language."""
    lines = [f"{'split':<8} {'shards':>6} {'read':>8} {'translated':>10} {'written':>8} {'rejected':>8}"]
    for split, s in summary["splits"].items():
        lines.append(f"{split:<8} {s['shards']:>6} {s['read']:>8} {s['translated']:>10} {s['written']:>8} {s['rejected']:>8}")
    t = summary["totals"]
    lines.append(f"{'total':<8} {'':>6} {t['read']:>8} {t['translated']:>10} {t['written']:>8} {t['rejected']:>8}")
    lines.append("")
    lines.append(f"{'stage':<10} {'in':>8} {'out':>8} {'rejected':>8}")
    stages = _ordered(summary["preprocess"]["stages"])
    for stage, per_lang in stages.items():
        c = collections.Counter()
        for counts in per_lang.values():
            c.update(counts)
        lines.append(f"{stage:<10} {c.get('in', c.get('out', 0)):>8} {c.get('out', 0):>8} {c.get('rejected', 0):>8}")
    lines.append("")
    written = stages.get("write", {})
    rejected_by_lang = collections.Counter()
    for per_lang in stages.values():
        for lang, counts in per_lang.items():
            rejected_by_lang[lang] += counts.get("rejected", 0)
    read_by_lang = {lang: c.get("in", 0) for lang, c in stages.get("read", {}).items()}
    lines.append(f"{'language':<10} {'read':>8} {'written':>8} {'rejected':>8}")
    for lang in sorted(set(written) | set(read_by_lang)):
        lines.append(f"{lang:<10} {read_by_lang.get(lang, 0):>8} {written.get(lang, {}).get('out', 0):>8} "
                     f"{rejected_by_lang.get(lang, 0):>8}")
    vocab = summary["preprocess"]["vocab"]
    if vocab:
        lines.append("")
        lines.append(f"vocabulary: {vocab['size']} pieces -> {out / VOCAB_FILE}")
    if summary["source_errors"]:
        lines.append(f"source errors: {len(summary['source_errors'])} (see summary.json)")
    return "\n".join(lines)


__all__ = ["preprocess", "summarize", "summary_table", "PreprocessError", "build_dataset", "VOCAB_FILE"]
