"""`dist-train`: one command, one subcommand per stage of the pipeline (pack -> preprocess -> train -> eval).

Each subcommand is a thin layer over a library function, so everything here can also be called
from Python.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

log = logging.getLogger("dist_train")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the example's layout; shows defaults that exist (and only once)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _parser(sub, name: str, help: str, example: str, description: str | None = None):
    p = sub.add_parser(name, help=help, description=description or help, epilog=f"example:\n  {example}",
                       formatter_class=_Formatter)
    _add_verbosity(p, argparse.SUPPRESS)  # also after the subcommand: dist-train train -q ...
    return p


def _add_verbosity(parser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars, warnings and errors only")


def _size(text: str) -> int:
    """'512M', '1G', '10000' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 512M or 1G)")
    return int(float(m[1]) * 1024 ** " kmgt".index(m[2] or " "))


def _path_or_url(text: str) -> str:
    """A local path or a URL, checked as `_location` does, kept as text (the command stages URLs itself)."""
    _location(text)
    return text[len("file://"):] if text.startswith("file://") else text


def _shard_spec(text: str):
    """A dataset folder, one shard, a brace pattern of shards (a path or URL), or a `pipe:` command (what
    the user typed runs, as webdataset's pipe: URLs do; never a value read from a file)."""
    from .data.verify import is_shard_pattern
    from .storage import PIPE

    if text.startswith(PIPE) or is_shard_pattern(text):
        return text
    return _location(text)


def _location(text: str):
    """A path or URL (s3://bucket/x, gs://, https://, file://): a local Path, or a UPath for a URL."""
    from .storage import StorageError, location

    try:
        return location(text)
    except StorageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ---------------------------------------------------------------------------------------------- pack


def _add_pack_options(p) -> None:
    from .data.pack import PackOptions

    d = PackOptions(workers=1)
    p.add_argument("--out", required=True, type=_location, help="output dataset folder (a path or a URL: s3://bucket/x)")
    p.add_argument("--max-samples-per-shard", type=int,
                   help=f"samples per shard (default: {d.max_samples_per_shard}, or the built-in preset's)")
    p.add_argument("--max-shard-bytes", type=_size, default=d.max_shard_bytes, help="bytes per shard, e.g. 512M")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="reject images with more pixels")
    p.add_argument("--max-side", type=int, help="shrink images whose longer side is larger")
    p.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality, help="JPEG quality, 1 to 100")
    p.add_argument("--max-image-bytes", type=_size, default=d.max_image_bytes,
                   help="reject image files larger than this unread, e.g. 256M")
    p.add_argument("--workers", type=int, help="image encoding processes (default: all cores; 0 = none)")


_PACK_FLAGS = {"max_samples_per_shard": "--max-samples-per-shard", "max_shard_bytes": "--max-shard-bytes",
               "max_pixels": "--max-pixels", "max_side": "--max-side", "jpeg_quality": "--jpeg-quality",
               "max_image_bytes": "--max-image-bytes", "workers": "--workers"}


def _pack_options(args, default_samples_per_shard: int | None = None):
    """The packer's options; one out of range is a one-line error naming its flag (0 is a value, not unset)."""
    from .data.pack import PackOptionError, PackOptions

    kw = dict(max_shard_bytes=args.max_shard_bytes, max_pixels=args.max_pixels, max_side=args.max_side,
              jpeg_quality=args.jpeg_quality, max_image_bytes=args.max_image_bytes, progress=not args.quiet)
    samples = args.max_samples_per_shard if args.max_samples_per_shard is not None else default_samples_per_shard
    if samples is not None:
        kw["max_samples_per_shard"] = samples
    if args.workers is not None:
        kw["workers"] = args.workers
    try:
        return PackOptions(**kw)
    except PackOptionError as e:
        raise ValueError(f"{_PACK_FLAGS.get(e.field, e.field)} {e.problem}") from None


def cmd_pack(args) -> int:
    from .data.pack import check_out_folder, pack, summary_table

    _pack_options(args)  # bad options and a wrong --out fail before the source is read or anything written
    check_out_folder(args.out)
    source = args.source_cls.from_args(args)
    default_shard = getattr(getattr(source, "spec", None), "samples_per_shard", None)
    summary = pack(source, args.out, _pack_options(args, default_shard))
    print(summary_table(summary, args.out))
    return 0


# -------------------------------------------------------------------------------------------- shards


def cmd_verify(args) -> int:
    from .data.verify import verify_dataset
    from .storage import PIPE

    if isinstance(args.path, str) and args.path.startswith(PIPE):
        raise ValueError(f"{args.path}: verify checks each shard against its manifest beside it; give the shard's "
                         "path or URL (or a brace pattern of them); `shards inspect` reads pipe: commands")

    report = verify_dataset(args.path, decode_images=args.decode, workers=args.workers, progress=not args.quiet)
    for problem in report.problems:
        print(f"FAIL {problem}")
    for shard in report.bad_shards:
        for problem in shard.problems:
            print(f"FAIL {shard.path}: {problem}")
    n = sum(s.samples for s in report.shards)
    if report.ok:
        print(f"OK {len(report.shards)} shard(s), {n} samples verified under {args.path}")
        return 0
    problems = f"{len(report.problems)} problem(s) with the dataset, " if report.problems else ""
    print(f"verification failed: {problems}{len(report.bad_shards)} of {len(report.shards)} shard(s) bad")
    return 1


def cmd_inspect(args) -> int:
    from .data.schema import Sample
    from .data.shards import iter_shard
    from .data.verify import printable, shard_paths

    tars = [args.path] if str(args.path).startswith("pipe:") else shard_paths(args.path)
    if args.split:
        tars = [t for t in tars if isinstance(t, str) or t.parent.name == args.split]
    if not tars:
        print(f"no shards under {args.path}", file=sys.stderr)
        return 1
    if args.save_images:
        args.save_images.mkdir(parents=True, exist_ok=True)
    shown = 0
    for tar in tars:
        for raw in iter_shard(tar):
            s = Sample.from_wds(raw)
            if args.language and s.language != args.language:
                continue
            prov = s.provenance
            origin = prov.origin + (f" from {prov.source_language} by {prov.translator}" if prov.translator else "")
            # captions and metadata are the dataset's text: escaped, so that none can drive the terminal
            print(printable(f"{getattr(tar, 'name', 'pipe')} {s.key}  [{s.language}, {s.split}, {s.width}x{s.height}, {origin}]"))
            print(f"    {printable(s.caption)}")
            if args.meta:
                print(f"    meta: {printable(json.dumps(s.meta, ensure_ascii=False))}")
            if args.save_images:
                (args.save_images / f"{s.key}.jpg").write_bytes(s.image)
            shown += 1
            if shown >= args.n:
                return 0
    return 0


def cmd_stats(args) -> int:
    from .data.verify import dataset_stats

    stats = dataset_stats(args.path)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0
    for warning in stats["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if not stats["splits"]:
        print(f"no shards under {args.path}", file=sys.stderr)
        return 1
    for split, s in stats["splits"].items():
        print(f"{split}: {s['samples']} samples in {s['shards']} shard(s); mean caption {s['mean_caption_chars']} chars, "
              f"mean image {s['mean_image_bytes']} bytes, width {s['image_width']}, height {s['image_height']}")
        print("  languages: " + " ".join(f"{k}:{v}" for k, v in s["languages"].items()))
        print("  origins:   " + " ".join(f"{k}:{v}" for k, v in s["origins"].items()))
    if "read" in stats:
        print(f"read {stats['read']}, rejected {stats['rejected']}: "
              + (", ".join(f"{k}: {v}" for k, v in stats["rejects"].items()) or "none"))
    return 0


# ---------------------------------------------------------------------------------------------- preprocess


def cmd_preprocess(args) -> int:
    from .config import load_config
    from .preprocess.config import PreprocessConfig, validate
    from .preprocess.pipeline import preprocess, summary_table

    overrides = list(args.overrides)
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    cfg = load_config(PreprocessConfig, args.config, overrides, validate)
    summary = preprocess(args.input, args.out, cfg, progress=not args.quiet)
    print(summary_table(summary, args.out))
    print(f"summary: {args.out / 'summary.json'}; rejected rows: {args.out / 'rejects.parquet'}")
    return 0


def cmd_translate_convert(args) -> int:
    from .preprocess.translate import convert_model

    out = convert_model(args.model, args.out, quantization=args.quantization, force=args.force)
    print(f"converted {args.model} -> {out}")
    return 0


# ---------------------------------------------------------------------------------------------- train


def _world_preset(shards: Path) -> str | None:
    """`shards/world-<preset>` names a built-in benchmark dataset that can be made on the spot."""
    from .data.world.dataset import PRESETS

    name = shards.name
    if shards.parent.name == "shards" and name.startswith("world-") and name[len("world-"):] in PRESETS:
        return name[len("world-"):]
    return None


def ensure_training_data(cfg) -> None:
    """Pack and preprocess the built-in benchmark named by data.shards when it is not there yet."""
    from .storage import is_remote, location

    shards = location(cfg.data.shards)
    if (shards / "spm.model").is_file() and (shards / "summary.json").is_file():
        return
    preset = None if is_remote(shards) else _world_preset(shards)
    if preset is None or not cfg.data.prepare_world:
        raise FileNotFoundError(f"data.shards: {shards} is not a preprocessed dataset (run dist-train preprocess)")
    from .demo import prepare_world

    log.info("%s is missing: packing and preprocessing the built-in benchmark (%s) first", shards, preset)
    if prepare_world(preset, shards.parent, progress=False) is None:
        raise RuntimeError(f"packing the built-in benchmark into {shards.parent} failed verification")


def cmd_train(args) -> int:
    import os

    from .train.main import load_train_config

    if args.nproc_per_node < 1:
        raise ValueError(f"--nproc-per-node {args.nproc_per_node}: must be at least 1")
    cfg = load_train_config(str(args.config) if args.config else None, list(args.overrides))
    from .config import apply_storage_options, to_dict, without_storage_secrets

    if args.print_config:  # the whole resolved config, every default included; nothing is run
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(OmegaConf.create(without_storage_secrets(to_dict(cfg)))), end="")
        return 0
    apply_storage_options(cfg)
    ensure_training_data(cfg)
    already_launched = "RANK" in os.environ or "SLURM_PROCID" in os.environ
    if args.nproc_per_node > 1 and not already_launched:
        from .storage import is_url
        from .train.config import run_dir
        from .train.engine import preflight
        from .train.remote_run import RemoteRun

        if is_url(cfg.out_dir):  # a run in object storage: staged here first, so that preflight sees it
            RemoteRun(cfg.out_dir, run_dir(cfg)).pull(cfg.checkpoint.resume_from)
        preflight(cfg)  # here, not in each worker: one line, before any process starts
        # torchrun run by our own launcher: on loopback only, and a failed worker ends it in one line
        # (dist_train.launch.worker is dist_train.train.main, quiet on the ranks that only saw a peer go).
        cmd = [sys.executable, "-m", "dist_train.launch.local", "--standalone", f"--nproc-per-node={args.nproc_per_node}",
               "-m", "dist_train.launch.worker", *(["--config", str(args.config)] if args.config else []),
               *args.overrides]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        if args.verbose or args.quiet:  # -q / -v reach the workers
            from .train.main import LOG_LEVEL_ENV

            env[LOG_LEVEL_ENV] = "DEBUG" if args.verbose else "WARNING"
        # Become torchrun, so that signals (Ctrl-C, SLURM's SIGTERM) reach it and it stops the workers.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, cmd, env)
    from .train.engine import train

    result = train(cfg)
    from .train.config import run_dir

    print(f"trained to step {result['step']}; checkpoints: {cfg.out_dir.rstrip('/')}/checkpoints; "
          f"TensorBoard: tensorboard --logdir {run_dir(cfg) / 'tb'}")
    return 0


class _local_copy:
    """`with _local_copy(path) as local:` a run, checkpoints, step or export folder on local disk: the path
    itself, or what loading reads of it downloaded from a URL into a temporary folder."""

    def __init__(self, path: str):
        self.path, self._tmp = str(path), None

    def __enter__(self) -> Path:
        from .storage import is_url

        if not is_url(self.path):
            return Path(self.path)
        import tempfile

        from .train.remote_run import fetch_for_loading

        self._tmp = tempfile.TemporaryDirectory(prefix="dist-train-checkpoint-")
        return fetch_for_loading(self.path, self._tmp.name)

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def cmd_export(args) -> int:
    from .storage import is_url, listdir, location, staged_folder
    from .train.export import ExportError, export

    if is_url(args.out) and listdir(location(args.out)) and not args.force:
        raise ExportError(f"{args.out} is not empty; pass --force to replace the export in it, or give an empty folder")
    with _local_copy(args.checkpoints) as checkpoints, staged_folder(args.out) as local_out:
        export(checkpoints, local_out, tag=args.tag, force=args.force)
    print(f"wrote {args.out.rstrip('/')}/model.safetensors and {args.out.rstrip('/')}/config.yaml")
    return 0


def cmd_eval(args) -> int:
    from contextlib import ExitStack

    from .eval.run import evaluate, summary_line
    from .storage import staged_folder
    from .train.export import model_name

    members = [m.strip() for m in (args.ensemble or "").split(",") if m.strip()]
    if args.ensemble is not None and not members:
        raise ValueError("--ensemble: give one or more checkpoints, separated by commas")

    def mmt_member(member: str, local: Path) -> Path:
        """An --ensemble checkpoint, checked to hold a translation model before any weights are read."""
        found = model_name(local)
        if found == "mmt":
            return local
        if not local.exists():
            raise FileNotFoundError(f"--ensemble {member}: no such checkpoint or export")
        what = f"holds a {found} model" if found else "is not a run, checkpoints, step or export folder"
        raise ValueError(f"--ensemble {member}: {what}, not a translation model (model: mmt)")

    with _local_copy(args.checkpoint) as checkpoint, staged_folder(args.out) as out:
        name = model_name(checkpoint)
        if members and name != "mmt":
            raise ValueError(f"--ensemble: only translation models (model: mmt) decode as an ensemble; "
                             f"{args.checkpoint} holds {f'a {name} model' if name else 'no model this command knows'}")
        if name == "mmt":  # a translation model: sacreBLEU and METEOR of its translations
            from .eval.translation import evaluate_translation
            from .eval.translation import summary_line as translation_summary

            with ExitStack() as copies:
                ensemble = [mmt_member(m, copies.enter_context(_local_copy(m))) for m in members]
                metrics = evaluate_translation([checkpoint, *ensemble], args.shards, out, split=args.split,
                                               beam_size=args.beam_size, batch_size=args.batch_size,
                                               meteor=not args.no_meteor, progress=not args.quiet)
            print(translation_summary(metrics))
            where = args.out.rstrip("/")
            print(f"wrote {where}/metrics.json and {where}/report.md")
            return 0
        if name == "pivot":  # a captioner: Table 1 of visual pivoting
            from .eval.pivot import PivotSettings, evaluate_pivot
            from .eval.pivot import summary_line as pivot_summary

            settings = None
            if args.pivot_steps is not None or args.pivot_lr is not None or args.beam_size is not None:
                from .train.export import run_objective

                settings = PivotSettings.of_run(run_objective(checkpoint), steps=args.pivot_steps, lr=args.pivot_lr,
                                                beam_size=args.beam_size, batch_size=args.batch_size)
            pairs = [tuple(p.split("-", 1)) for p in args.pairs.split(",")] if args.pairs else None
            metrics = evaluate_pivot(checkpoint, args.shards, out, split=args.split, pairs=pairs, settings=settings,
                                     meteor=not args.no_meteor, progress=not args.quiet)
            print(pivot_summary(metrics))
            where = args.out.rstrip("/")
            print(f"wrote {where}/metrics.json and {where}/report.md")
            return 0
        metrics = evaluate(checkpoint, args.shards, out, split=args.split, batch_size=args.batch_size,
                           human_languages=args.human_languages.split(",") if args.human_languages else None,
                           word_translation=not args.no_word_translation, csls=args.csls,
                           word_representation=args.word_representation, word_alignment=args.word_alignment,
                           progress=not args.quiet)
        heatmaps = [name for name in ("sentence_translation_pairs.png", "word_translation_pairs.png")
                    if (out / name).is_file()]
    print(summary_line(metrics))
    where = args.out.rstrip("/")
    print(f"wrote {where}/metrics.json, {where}/report.md and {', '.join(f'{where}/{h}' for h in heatmaps)}")
    return 0


def cmd_caption(args) -> int:
    from .eval.pivot import PivotSettings, caption

    from .train.export import run_objective

    with _local_copy(args.checkpoint) as checkpoint:
        settings = None
        if args.steps is not None or args.lr is not None or args.beam_size is not None:
            settings = PivotSettings.of_run(run_objective(checkpoint), steps=args.steps, lr=args.lr,
                                            beam_size=args.beam_size)
        result = caption(checkpoint, args.lang, image=args.image, given=args.given, given_lang=args.given_lang,
                         settings=settings, vocab_file=args.vocab)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        from .data.verify import printable

        print(printable(result["caption"]))
    return 0


# ---------------------------------------------------------------------------------------------- launch


def cmd_launch(args) -> int:
    from .launch.executor import SlurmOptions, parse_sbatch_options
    from .launch.submit import cancel, launch_preprocess, launch_train, wait_for

    if args.cancel:
        cancel(args.cancel, args.job_dir)
        return 0
    opts = SlurmOptions(nodes=args.nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.tasks_per_node,
                        cpus_per_task=args.cpus_per_task, mem=args.mem, partition=args.partition,
                        account=args.account, qos=args.qos, constraint=args.constraint, time=args.time,
                        job_name=args.job_name or f"dist-train-{args.target}",
                        sbatch=parse_sbatch_options(args.sbatch or []), max_requeues=args.max_requeues)
    if args.target == "preprocess":
        if args.input is None or args.out is None:
            raise ValueError("--target preprocess needs --in PACKED and --out DIR")
        if args.sweep or args.sweep_file:
            raise ValueError("--sweep and --sweep-file apply to --target train only")
        launched = launch_preprocess(args.input, args.out, args.config, list(args.overrides), opts,
                                     job_dir=args.job_dir, local=args.local, dry_run=args.dry_run)
    else:
        launched = launch_train(args.config, list(args.overrides), opts, sweep=args.sweep or [], sweep_file=args.sweep_file,
                                job_dir=args.job_dir, local=args.local, dry_run=args.dry_run)
    if launched is None or not args.wait:
        return 0
    return 1 if wait_for(launched) else 0


# ---------------------------------------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(preset=args.preset, shards_root=args.shards_root, workers=args.workers, progress=not args.quiet,
                    runs_root=args.runs_root, processes=args.processes, smalr=not args.no_smalr,
                    pivot=not args.no_pivot, mmt=not args.no_mmt, stage=args.stage)


# ---------------------------------------------------------------------------------------------- main


class _ConfigFlag(argparse.Action):
    """A flag that stands for a `key=value` override, added to the overrides so that the processes
    `dist-train train` starts (torchrun workers) get it with the others."""

    def __init__(self, option_strings, dest, const=None, **kw):
        super().__init__(option_strings, dest, nargs=0, const=const, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), self.const]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dist-train")
    except Exception:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    from .data.sources import ALL_CLI_SOURCES
    from .data.sources.world import WorldSource

    parser = argparse.ArgumentParser(
        prog="dist-train",
        description="Distributed training of multilingual vision-language models.",
        epilog="example:\n  dist-train demo",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"dist-train {_version()}")
    _add_verbosity(parser, False)
    parser.add_argument("--storage-options", metavar="JSON",
                        help="filesystem options for URLs, per protocol, e.g. '{\"s3\": {\"endpoint_url\": "
                             "\"http://127.0.0.1:9000\"}}' (also passed to the processes this command starts; "
                             "credentials are better left to the environment or ~/.aws)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _parser(sub, "demo", "run the main job on the built-in benchmark", "dist-train demo --preset tiny",
                "The whole pipeline on the built-in multilingual benchmark: pack it into shards/packed/, preprocess\n"
                "it with Ray into shards/, train Globetrotter with DeepSpeed ZeRO-2 on local processes into runs/,\n"
                "and evaluate it; then SMALR on the benchmark in ten languages (every image captioned in each,\n"
                "image features precomputed) with its image-text mean recall and Cross-Lingual Consistency; visual\n"
                "pivoting (captioners per language, Table 1); and en -> de multimodal translation with adversarial\n"
                "reconstruction (Q-WAAE, sacreBLEU and METEOR). `--stage mmt` runs that last stage alone.\n"
                "Each step resumes or is skipped when its output is already there.")
    p.add_argument("--preset", default="demo", help="built-in benchmark size: tiny, demo or large")
    p.add_argument("--shards-root", type=Path, default=Path("shards"), help="where datasets are written")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="where training runs are written")
    p.add_argument("--processes", type=int, default=2, help="training processes (gloo on CPU)")
    p.add_argument("--workers", type=int, help="image encoding processes (default: all cores)")
    p.add_argument("--no-smalr", action="store_true", help="skip the SMALR stage")
    p.add_argument("--no-pivot", action="store_true", help="skip the visual-pivoting stage")
    p.add_argument("--no-mmt", action="store_true", help="skip the multimodal-translation stage")
    p.add_argument("--stage", choices=("all", "mmt"), default="all",
                   help="all stages (default), or only the multimodal-translation stage (its dataset made if missing)")
    p.set_defaults(func=cmd_demo)

    p = _parser(sub, "pack", "pack a dataset into WebDataset shards",
                "dist-train pack world --preset tiny --out shards/packed/world-tiny",
                "Validate, re-encode and write a dataset as size-bounded WebDataset shards with Parquet manifests.\n"
                "Rejected records are counted by reason in summary.json and listed in rejects.parquet.\n"
                "Rerunning on the same --out resumes: finished shards are kept. Input formats: docs/sources.md.")
    pack_sub = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for cls in (WorldSource, *ALL_CLI_SOURCES):
        sp = _parser(pack_sub, cls.cli_name, cls.cli_help, cls.cli_example)
        cls.add_arguments(sp)
        _add_pack_options(sp)
        sp.set_defaults(func=cmd_pack, source_cls=cls)

    p = _parser(sub, "preprocess", "clean, tokenize, translate and featurize shards with Ray",
                "dist-train preprocess --in shards/packed/world-tiny --out shards/world-tiny\n"
                "  dist-train preprocess --in packed/coco --out data/coco --config configs/preprocess/default.yaml \\\n"
                "      --ray-address auto translate.enabled=true translate.backend=ctranslate2 \\\n"
                "      translate.model=/models/ct2/nllb-600M translate.augment_splits=[test] \\\n"
                "      translate.augment_languages=[en,de,fr,ja] features.enabled=true features.weights=/models/resnet18.pth",
                "A Ray Data pipeline from packed shards (dist-train pack) to training-ready shards of the same\n"
                "layout: image validation and re-encoding, caption normalisation, the shared sentencepiece\n"
                "vocabulary (OUT/spm.model), token ids, machine translation and image features, each stage\n"
                "switchable in the config. Rerunning on the same --out skips everything already finished.")
    p.add_argument("--in", dest="input", type=_location, required=True, help="packed dataset folder (a path or a URL: s3://bucket/x)")
    p.add_argument("--out", type=_location, required=True, help="output dataset folder (a path or a URL)")
    p.add_argument("--config", type=Path, help="YAML settings (configs/preprocess/); defaults otherwise")
    p.add_argument("--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local one")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override any config key, e.g. vocab.size=8000")
    p.set_defaults(func=cmd_preprocess)

    p = _parser(sub, "translate", "translation model helpers", "dist-train translate convert /models/opus-mt-en-de /models/ct2/opus-mt-en-de --quantization int8")
    tr_sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp = _parser(tr_sub, "convert", "convert a local transformers translation model for CTranslate2",
                 "dist-train translate convert /models/nllb-200-distilled-600M /models/ct2/nllb-600M --quantization int8")
    sp.add_argument("model", type=Path, help="local transformers model directory (MarianMT, M2M100, NLLB)")
    sp.add_argument("out", type=Path, help="output directory for the CTranslate2 model")
    sp.add_argument("--quantization", help="int8, int8_float32, float16, ... (default: keep the weights' type)")
    sp.add_argument("--force", action="store_true", help="replace an existing output directory")
    sp.set_defaults(func=cmd_translate_convert)

    p = _parser(sub, "train", "train a model with DeepSpeed (ZeRO 0-3) on preprocessed shards",
                "dist-train train --config configs/globetrotter-tiny.yaml out_dir=runs/tiny\n"
                "  dist-train train --config configs/globetrotter-tiny.yaml --nproc-per-node 2 out_dir=runs/tiny2 \\\n"
                "      deepspeed.zero_stage=3 objective.visual=0\n"
                "  torchrun --nproc-per-node 8 -m dist_train.train.main --config configs/globetrotter-demo.yaml out_dir=/runs/gt",
                "Train the model named in the config on a dataset made by dist-train preprocess, with a DeepSpeed\n"
                "engine built from the JSON in configs/deepspeed/. Checkpoints go to OUT_DIR/checkpoints/ and\n"
                "TensorBoard logs to OUT_DIR/tb/; running the same command again resumes from the latest\n"
                "complete checkpoint. Under torchrun, the deepspeed launcher or srun each process runs this\n"
                "same code; --nproc-per-node starts local processes itself (gloo on CPU).")
    p.add_argument("--config", type=Path, help="experiment config (configs/*.yaml)")
    p.add_argument("--nproc-per-node", type=int, default=1, help="local processes to start (torchrun --standalone)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (file, overrides and every default) as YAML and exit")
    p.add_argument("--allow-config-change", action=_ConfigFlag, const="allow_config_change=true",
                   help="resume a run with settings that change it (the old config is kept as config.STEP.yaml)")
    p.add_argument("overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. out_dir=runs/x")
    p.set_defaults(func=cmd_train)

    p = _parser(sub, "launch", "submit training (or preprocessing) to SLURM through submitit",
                "dist-train launch --nodes 2 --gpus-per-node 4 --cpus-per-task 8 --mem 200G --partition gpu \\\n"
                "      --time 12:00:00 --config configs/globetrotter-tiny.yaml out_dir=/runs/gt\n"
                "  dist-train launch --dry-run --nodes 2 --gpus-per-node 4 --config configs/globetrotter-tiny.yaml\n"
                "  dist-train launch --tasks-per-node 2 --sweep objective.visual=0,1 --sweep optim.lr=1e-4,3e-4 \\\n"
                "      --config configs/globetrotter-tiny.yaml out_dir=runs/sweep\n"
                "  dist-train launch --target preprocess --cpus-per-task 16 --in shards/packed/coco --out shards/coco\n"
                "  dist-train launch --cancel 1234",
                "Submit `dist-train train` as one SLURM job with one task per GPU (a job array for a sweep, one run\n"
                "folder per point), or `dist-train preprocess` on a Ray cluster started inside the allocation.\n"
                "Preempted or timed-out jobs write a checkpoint, requeue themselves and resume exactly. Prints\n"
                "the job id, the log folder, the run's out_dir and the TensorBoard command; --wait waits and\n"
                "shows a failed job's remote traceback. --dry-run prints the sbatch script instead of submitting;\n"
                "--local runs the same job with submitit's local executor on this machine.")
    p.add_argument("--target", choices=("train", "preprocess"), default="train", help="what the job runs")
    p.add_argument("--config", type=Path, help="experiment config (train) or preprocess settings (preprocess)")
    p.add_argument("--in", dest="input", type=_location, help="packed dataset folder (--target preprocess)")
    p.add_argument("--out", type=_location, help="output dataset folder (--target preprocess)")
    p.add_argument("--nodes", type=int, default=1, help="nodes")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node; one task per GPU")
    p.add_argument("--tasks-per-node", type=int, help="tasks per node on CPU-only nodes (default: GPUs per node, or 1)")
    p.add_argument("--cpus-per-task", type=int, help="CPUs per task (loader workers + 1 is a good start)")
    p.add_argument("--mem", help="memory per node: megabytes, or with K, M, G or T (e.g. 200G)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--qos", help="SLURM quality of service")
    p.add_argument("--constraint", help="node features, e.g. a100")
    p.add_argument("--time", default="24:00:00", help="time limit (minutes, HH:MM:SS or D-HH:MM:SS)")
    p.add_argument("--sbatch", action="append", default=None, metavar="KEY=VALUE",
                   help="any other sbatch long option, repeatable: --sbatch mail-type=END --sbatch exclusive; not "
                   "the ones the launcher writes (nodes, ntasks, ntasks-per-node, output, error, open-mode, array, "
                   "signal, wrap) nor those with their own flag (job-name, partition, time, mem, ...: use the flag)")
    p.add_argument("--job-name", help="SLURM job name (default: dist-train-TARGET)")
    p.add_argument("--job-dir", type=Path, help="submitit folder: job pickles and logs <jobid>_<task>_log.out "
                   "(default: OUT_DIR/submitit, or the sweep's root/submitit)")
    p.add_argument("--max-requeues", type=int, default=20, help="time-limit requeues before giving up")
    p.add_argument("--sweep", action="append", default=None, metavar="KEY=V1,V2",
                   help="sweep a key over values (repeatable: the grid of all); one run per point, as a job array")
    p.add_argument("--sweep-file", type=Path, help="YAML grid (key: [values]) or list of points ([{key: value}])")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script and submit nothing")
    p.add_argument("--local", action="store_true", help="run with submitit's local executor on this machine")
    p.add_argument("--wait", action="store_true", help="wait for the jobs; exit 1 with the traceback of a failed one")
    p.add_argument("--cancel", nargs="+", metavar="JOBID", help="cancel these jobs (scancel) and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override any config key, e.g. out_dir=runs/x")
    p.set_defaults(func=cmd_launch)

    p = _parser(sub, "export", "write a checkpoint's fp32 weights as safetensors with the model config",
                "dist-train export runs/tiny/checkpoints runs/tiny/export")
    p.add_argument("checkpoints", type=_path_or_url, help="the run's checkpoints folder (a path or a URL)")
    p.add_argument("out", type=_path_or_url, help="output folder (model.safetensors, config.yaml, spm.model; a path or a URL)")
    p.add_argument("--tag", help="a checkpoint tag (default: the latest complete one)")
    p.add_argument("--force", action="store_true", help="replace the export in a non-empty output folder")
    p.set_defaults(func=cmd_export)

    p = _parser(sub, "eval", "measure a trained model: translation by retrieval, word translation, cross-modal recall; "
                "BLEU and METEOR of captioners and translation models",
                "dist-train eval --checkpoint runs/tiny/checkpoints --shards shards/world-tiny --out runs/tiny/eval",
                "Evaluate a checkpoint folder (DeepSpeed, the latest complete checkpoint) or an exported model on\n"
                "the test split of a preprocessed dataset: sentence translation by retrieval (overall, per\n"
                "language pair and over pairs of languages that share no script), word translation recall@10\n"
                "before and after Procrustes alignment, and image-text recall per language (with CLC-A/CLC-C\n"
                "when the captions carry translated queries), each figure beside its chance level. Writes\n"
                "OUT/metrics.json, OUT/report.md and the language-pair heatmaps.\n\n"
                "A pivot captioner (model: pivot) gets the visual-pivoting table instead: BLEU-4, ROUGE-L, CIDEr\n"
                "and METEOR of image -> a, image + b -> a and b -> a (feedback propagation) with the noise-image\n"
                "and retrieval baselines, for each language pair:\n"
                "  dist-train eval --checkpoint runs/pivot-demo/checkpoints --shards shards/world-pivot \\\n"
                "      --out runs/pivot-demo/eval --pairs en-de\n\n"
                "A multimodal translation model (model: mmt) gets sacreBLEU (with its signature) and METEOR of its\n"
                "beam-search translations of each test image's first source caption, against all of the image's\n"
                "target captions and the caption's stored translation; --ensemble decodes more runs with it as\n"
                "one ensemble (their probabilities averaged at each step):\n"
                "  dist-train eval --checkpoint runs/mmt-demo/best --shards shards/world-demo-parallel2 \\\n"
                "      --out runs/mmt-demo/eval --ensemble runs/mmt-demo-s1/best,runs/mmt-demo-s2/best")
    p.add_argument("--checkpoint", type=_path_or_url, required=True,
                   help="checkpoints folder, one step folder, or export (a path or a URL)")
    p.add_argument("--shards", type=_location, required=True, help="preprocessed dataset folder (a path or a URL)")
    p.add_argument("--out", type=_path_or_url, required=True, help="output folder (a path or a URL)")
    p.add_argument("--split", default="test", help="split to evaluate")
    p.add_argument("--batch-size", type=int, default=128, help="sentences or images per forward pass")
    p.add_argument("--human-languages", help="comma-separated languages with human captions (SMALR's HA average)")
    p.add_argument("--csls", action="store_true", help="word translation: CSLS instead of cosine (retrieval and anchors)")
    p.add_argument("--word-representation", choices=("input", "contextual"), default="input",
                   help="word translation: input word embeddings (the paper's) or averaged hidden states")
    p.add_argument("--word-alignment", choices=("generalized", "pairwise"), default="generalized",
                   help="word translation: multi-language generalised Procrustes or one map per language pair")
    p.add_argument("--no-word-translation", action="store_true",
                   help="skip word translation (generalised Procrustes grows with languages x hidden size)")
    p.add_argument("--pairs", help="pivot captioners: language pairs of Table 1, e.g. en-de,en-fr (default: every pair)")
    p.add_argument("--pivot-steps", type=int, help="pivot captioners: feedback-propagation steps (default: the run's)")
    p.add_argument("--pivot-lr", type=float, help="pivot captioners: feedback-propagation rate (default: the run's)")
    p.add_argument("--no-meteor", action="store_true",
                   help="pivot captioners and translation models: skip METEOR (it needs Java)")
    p.add_argument("--beam-size", type=int,
                   help="translation models and pivot captioners: beam width (default: the run's)")
    p.add_argument("--ensemble", metavar="CKPT[,CKPT...]",
                   help="translation models: more checkpoints of MMT runs (paths or URLs), decoded as one ensemble "
                   "with --checkpoint")
    p.set_defaults(func=cmd_eval)

    p = _parser(sub, "caption", "caption an image, or translate a caption, with a pivot captioner",
                "dist-train caption --checkpoint runs/pivot-demo/checkpoints --image x.jpg --lang de",
                "Three uses of a trained visual-pivoting captioner (model: pivot):\n"
                "  --image x.jpg --lang de                                 the image's caption in de\n"
                "  --image x.jpg --lang de --given 'a dog runs' --given-lang en   corrected by a caption in en\n"
                "  --lang de --given 'a dog runs' --given-lang en          translated, with no image at all\n"
                "(feedback propagation fits the pivot to the given caption, then decodes the target language).")
    p.add_argument("--checkpoint", type=_path_or_url, required=True,
                   help="checkpoints folder, one step folder, or export (a path or a URL)")
    p.add_argument("--lang", required=True, help="the language of the caption to write")
    p.add_argument("--image", type=Path, help="an image file")
    p.add_argument("--given", help="a caption to fit the pivot to")
    p.add_argument("--given-lang", help="the language of --given")
    p.add_argument("--steps", type=int, help="feedback-propagation steps (default: the run's)")
    p.add_argument("--lr", type=float, help="feedback-propagation rate (default: the run's)")
    p.add_argument("--beam-size", type=int, help="beam width (default: the run's, 5)")
    p.add_argument("--vocab", type=Path, help="the sentencepiece model (default: the one beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_caption)

    p = _parser(sub, "shards", "verify, inspect and count packed shards", "dist-train shards verify shards/packed/world-tiny")
    shards_sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp = _parser(shards_sub, "verify", "check every shard against its manifest (exit 1 naming bad shards)",
                 "dist-train shards verify shards/packed/world-tiny --decode")
    sp.add_argument("path", type=_shard_spec,
                    help="dataset folder, one .tar shard or a brace pattern of shards (a path or a URL)")
    sp.add_argument("--decode", action="store_true", help="also decode every image")
    sp.add_argument("--workers", type=int, default=1, help="shards checked in parallel")
    sp.set_defaults(func=cmd_verify)
    sp = _parser(shards_sub, "inspect", "print a few samples", "dist-train shards inspect shards/packed/world-tiny --split test -n 14")
    sp.add_argument("path", type=_shard_spec,
                    help="dataset folder, one .tar shard, a brace pattern of shards (a path or a URL), or a pipe: "
                         "command that writes a shard ('pipe:aws s3 cp s3://b/x.tar -')")
    sp.add_argument("-n", type=int, default=5, help="number of samples")
    sp.add_argument("--split", help="only this split")
    sp.add_argument("--language", help="only this language")
    sp.add_argument("--meta", action="store_true", help="also print the free-form metadata")
    sp.add_argument("--save-images", type=Path, help="write the samples' images to this folder")
    sp.set_defaults(func=cmd_inspect)
    sp = _parser(shards_sub, "stats", "counts per split and language, rejects by reason",
                 "dist-train shards stats shards/packed/world-tiny --json")
    sp.add_argument("path", type=_location, help="dataset folder (a path or a URL)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = "DEBUG" if args.verbose else "WARNING" if args.quiet else "INFO"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from .storage import quiet_storage_loggers

    quiet_storage_loggers(verbose=args.verbose)

    from .data.pack import PackError
    from .preprocess.pipeline import PreprocessError

    try:
        if args.storage_options:
            from .storage import set_storage_options

            set_storage_options(args.storage_options)
        return args.func(args)
    except (PackError, PreprocessError, ValueError, FileNotFoundError, RuntimeError) as e:
        log.debug("error", exc_info=True)
        print(f"dist-train {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as e:
        from .storage import storage_failure

        if not storage_failure(e):
            raise
        # a store that cannot be reached or used, a file that cannot be read: one line, not a traceback
        log.debug("error", exc_info=True)
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"dist-train {args.command}: error: {type(e).__name__}: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
