"""Caption translation throughput: one sentence at a time vs batched, transformers vs CTranslate2.

All variants translate the same fixed set of benchmark captions with the same model in the same
run. The model is an opus-mt-sized MarianMT with random weights (or `--model DIR`, a local
transformers directory); random weights would stop at random lengths, so every variant is held
to exactly `--tokens` generated tokens per sentence (min = max length) and does the same work.

Goals: batched length-sorted >= 10x one at a time; CTranslate2 int8 >= 2x transformers batched.

    python tools/bench/translate.py --sentences 256 --tokens 32

`measure` times any callable that translates a list of texts, so other variants (a Ray actor
pool, say) are added as one more entry of `variants` in `main`, or by calling `measure` and
`run_rounds` from another script.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dist_train.data.world.dataset import World, get_spec
from dist_train.preprocess.translate import (CTranslate2Translator, HFTranslator, build_tiny_marian,
                                             convert_model)


@dataclass
class Measurement:
    variant: str
    sentences: int
    seconds: float

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds


def measure(variant: str, translate: Callable[[list[str]], list[str]], texts: Sequence[str],
            warmup: int = 2) -> Measurement:
    """Time `translate(texts)` after translating the first `warmup` texts once (first-call costs:
    lazy imports, allocator growth, thread pools). The callable must return one output per text."""
    texts = list(texts)
    if warmup:
        translate(texts[:warmup])
    start = time.perf_counter()
    outputs = translate(texts)
    seconds = time.perf_counter() - start
    if len(outputs) != len(texts):
        raise RuntimeError(f"{variant} returned {len(outputs)} outputs for {len(texts)} texts")
    return Measurement(variant, len(texts), seconds)


def captions(world: World, language: str) -> list[str]:
    """The distinct benchmark captions of one language, in generation order (mixed lengths)."""
    return list(dict.fromkeys(c.caption for split in ("train", "val", "test") for c in world.captions[split]
                              if c.language == language))


def one_at_a_time(translator, source: str, target: str) -> Callable[[list[str]], list[str]]:
    return lambda texts: [translator.translate([t], source, target)[0] for t in texts]


def batched(translator, source: str, target: str) -> Callable[[list[str]], list[str]]:
    return lambda texts: translator.translate(texts, source, target)


def ray_actor_stage(model_dir: Path, args, texts: Sequence[str]) -> Measurement:
    """The pipeline's translation stage itself: one shard of `texts` through a Ray actor pool of one
    `TranslateStage` (HF backend, batched and length-sorted), timed from submission to result,
    actor start and model load included (what a shard pays)."""
    import ray

    from dist_train.data.schema import Sample
    from dist_train.preprocess.pipeline import TranslateActor
    from dist_train.preprocess.work import Row, ShardWork

    rows = [Row(Sample(key=f"s{i}", image=b"", caption=t, language=args.source, image_id=f"i{i}",
                       caption_id=f"c{i}", source="bench", split="bench", width=1, height=1), i)
            for i, t in enumerate(texts)]
    work = ShardWork(split="bench", index=0, input_tar="", input_start=0, input_end=len(texts), rows=rows,
                     augment_plan={f"c{i}": [args.target] for i in range(len(texts))})
    config = {"backend": "hf", "model": str(model_dir), "batch_size": args.batch_size, "num_threads": args.threads,
              "num_cpus": 1, "max_length": args.tokens, "min_length": args.tokens}
    ray.init(address="local", num_cpus=max(2, args.threads), log_to_driver=False, include_dashboard=False)
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        t0 = time.perf_counter()
        out = ray.data.from_items([{"shard": "bench", "payload": work.dumps()}]).map_batches(
            TranslateActor, batch_size=1, fn_constructor_kwargs={"config": config},
            compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1).take_all()
        seconds = time.perf_counter() - t0
    finally:
        ray.shutdown()
    added = len(ShardWork.loads(out[0]["payload"]).rows) - len(texts)
    if added != len(texts):
        raise SystemExit(f"the actor stage translated {added} of {len(texts)} captions")
    return Measurement("ray actor stage (hf batched, incl. start-up)", len(texts), seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a local transformers MarianMT/NLLB directory (default: build a "
                    "random-weight opus-mt-sized Marian)")
    ap.add_argument("--d-model", type=int, default=512, help="width of the built model (opus-mt: 512)")
    ap.add_argument("--layers", type=int, default=6, help="encoder and decoder layers of the built model (opus-mt: 6)")
    ap.add_argument("--vocab", type=int, default=58101, help="vocabulary size of the built model (opus-mt-en-de: 58101)")
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--single", type=int, default=64,
                    help="how many of the sentences the one-at-a-time loop translates (it is slow; its rate is "
                         "sentences/s all the same); 0 for all")
    ap.add_argument("--tokens", type=int, default=32, help="generated tokens per sentence, the same for every variant")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--source", default="en")
    ap.add_argument("--target", default="de")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all variants; each variant's lower "
                    "median is reported (the faster of two)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray actor-stage variant")
    args = ap.parse_args()

    world = World.generate(get_spec("demo"))
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before starting; other processes will skew the timings, "
              "multi-threaded ones most")
    texts = captions(world, args.source)[:args.sentences]
    if len(texts) < args.sentences:
        raise SystemExit(f"the demo benchmark has {len(texts)} distinct {args.source} captions; use --sentences <= that")
    single_texts = texts[::max(1, len(texts) // args.single)][:args.single] if args.single else texts
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            corpus = captions(world, args.source), captions(world, args.target)
            t0 = time.perf_counter()
            model_dir = build_tiny_marian(tmp / f"opus-mt-{args.source}-{args.target}", *corpus,
                                          source_lang=args.source, target_lang=args.target,
                                          d_model=args.d_model, layers=args.layers, vocab_size=8000,
                                          pad_vocab_to=args.vocab)
            print(f"built a random Marian (d_model {args.d_model}, {args.layers} layers, vocabulary {args.vocab}) "
                  f"in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        ct2_dirs = {"fp32": convert_model(model_dir, tmp / "ct2-fp32"),
                    "int8": convert_model(model_dir, tmp / "ct2-int8", quantization="int8")}
        print(f"converted to CTranslate2 (fp32 and int8) in {time.perf_counter() - t0:.1f} s")

        lengths = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
        t0 = time.perf_counter()
        hf_single = HFTranslator(model_dir, batch_size=1, num_threads=args.threads, **lengths)
        hf_load_s = time.perf_counter() - t0
        hf_batched = HFTranslator(model_dir, batch_size=args.batch_size, num_threads=args.threads, **lengths)
        ct2 = {}
        load_s = {"hf": hf_load_s}
        for kind, directory in ct2_dirs.items():
            t0 = time.perf_counter()
            ct2[kind] = CTranslate2Translator(directory, compute_type="int8" if kind == "int8" else "float32",
                                              batch_size=args.batch_size, num_threads=args.threads,
                                              max_decoding_length=args.tokens, min_decoding_length=args.tokens)
            load_s[f"ctranslate2-{kind}"] = time.perf_counter() - t0

        src, tgt = args.source, args.target
        variants = {
            "hf-single": ("hf one-at-a-time", one_at_a_time(hf_single, src, tgt), single_texts),
            "hf": (f"hf batched (batch {args.batch_size}, length-sorted)", batched(hf_batched, src, tgt), texts),
            "ct2-fp32": ("ctranslate2 fp32 batched", batched(ct2["fp32"], src, tgt), texts),
            "ct2-int8": ("ctranslate2 int8 batched", batched(ct2["int8"], src, tgt), texts),
        }
        results = run_rounds(variants, args.repeat)
        if not args.no_ray:
            results["ray"] = ray_actor_stage(model_dir, args, texts)
        # every variant did the same work: the same number of tokens for every sentence (--tokens,
        # less a target-language token where the model family has one)
        lengths_seen = {translator.name: {len(ids) for ids in translator.generate_ids(texts[:8], src, tgt)}
                        for translator in (hf_batched, ct2["fp32"], ct2["int8"])}
        if len({frozenset(seen) for seen in lengths_seen.values()}) != 1 or \
                len(next(iter(lengths_seen.values()))) != 1:
            raise SystemExit(f"output lengths differ between or within variants: {lengths_seen}")

    report(results, load_s, args, len(single_texts))
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                         "load_seconds": load_s,
                                         "results": {key: asdict(r) | {"sentences_per_s": r.sentences_per_s}
                                                     for key, r in results.items()}}, indent=1))


def run_rounds(variants: dict[str, tuple[str, Callable[[list[str]], list[str]], Sequence[str]]],
               repeat: int) -> dict[str, Measurement]:
    """Measure every variant `repeat` times, in alternating rounds so that a burst of load
    elsewhere hits them all alike; keep each one's lower median (the faster of two)."""
    rounds = [{key: measure(*variant) for key, variant in variants.items()} for _ in range(repeat)]
    return {key: sorted((r[key] for r in rounds), key=lambda m: m.seconds)[(repeat - 1) // 2] for key in variants}


def report(results: dict[str, Measurement], load_s: dict[str, float], args, n_single: int) -> None:
    print(f"\n{args.sentences} {args.source}->{args.target} captions ({n_single} for the one-at-a-time loop), "
          f"{args.tokens} generated tokens each, {args.threads} thread(s), {args.repeat} round(s)")
    print(f"{'variant':44s} {'sentences':>9s} {'seconds':>8s} {'sent/s':>8s} {'tokens/s':>9s}")
    for r in results.values():
        print(f"{r.variant:44s} {r.sentences:9d} {r.seconds:8.2f} {r.sentences_per_s:8.1f} "
              f"{r.sentences_per_s * args.tokens:9.0f}")
    print("model load: " + ", ".join(f"{k} {v:.2f} s" for k, v in load_s.items()))
    single, hf, fp32, int8 = (results[key].sentences_per_s for key in ("hf-single", "hf", "ct2-fp32", "ct2-int8"))
    print(f"\nhf batched / hf one-at-a-time:    {hf / single:6.1f}x  (goal >= 10x)")
    print(f"ctranslate2 int8 / hf batched:    {int8 / hf:6.1f}x  (goal >= 2x)")
    print(f"ctranslate2 fp32 / hf batched:    {fp32 / hf:6.1f}x")
    if "ray" in results:
        ray_rate = results["ray"].sentences_per_s
        print(f"ray actor stage / hf one-at-a-time: {ray_rate / single:6.1f}x  (goal >= 10x)")


if __name__ == "__main__":
    main()
