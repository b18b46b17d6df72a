"""Visual-pivoting translation: batched feedback propagation against one sample at a time.

`PivotCaptioner` (registered as "pivot") translates a caption with no image by feedback
propagation: starting from the pivot of a noise image (`noise_pivot`, the paper's caption-only
case), gradient steps on the pivot z alone make the source-language decoder explain the given
caption, and the target language is then decoded from the optimised z (`generate`, beam 5).
`feedback_propagation` optimises one z per sample, a whole batch at once; since each sample's
loss only reaches its own z, a batch gives what each sample gives alone. Compared, on the same
randomly initialised model (seeded) and the same captions, in this run:

* batched:    `model.feedback_propagation(z0, [(src, tokens)], steps, lr)` on all `--batch`
              captions, then `generate` of the target language on the whole batch;
* per sample: the same two calls with B=1, looped over the first `--per-sample` captions (it is
              slow; its rate in sentences/s is extrapolated to the batch).

The optimised pivots of the two must agree (the max abs difference is printed) and so must the
decoded captions, so that both do the same computation. Lines: feedback propagation, decoding,
and the whole translate path (both). Goal: batched feedback propagation >= 10x per sample at
batch 64. Timings are noisy; the ratios are what to read, both sides measured in the same run
(`--repeat R` alternates R rounds and keeps each variant's lower median). On a machine whose
cores are busy elsewhere, torch's threads wait on each other and every op of a small batch
slows many times over (the per-sample loop most): there, compare at `--threads 1`.

    python tools/bench/pivot.py                     # spatial_cnn, 64 px, batch 64, 20 steps at lr 0.001
    python tools/bench/pivot.py --batch 16 --steps 40 --lr 0.01
    python tools/bench/pivot.py --arch resnet50 --image-size 224 --dims 512 --vocab 10000 --batch 8 --per-sample 2
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from dist_train.models.captioner import PivotCaptioner, pivot_layer_names
from dist_train.models.registry import build_model

SOURCE, TARGET = "en", "de"
# pixel statistics of the noise image, in the space the encoder reads (after normalisation):
# a normalised training set has mean 0 and standard deviation 1 per channel
PIXEL_MEAN, PIXEL_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="spatial_cnn", help="image encoder (resnet18..152, spatial_cnn)")
    parser.add_argument("--pivot-layer", help="where z is taken (default: layer3 for ResNets, the paper's "
                        "Conv-40 of ResNet-50; stage3 for spatial_cnn)")
    parser.add_argument("--image-size", type=int, default=64, help="side of the noise image, pixels")
    parser.add_argument("--batch", type=int, default=64, help="captions translated, all in one batched call")
    parser.add_argument("--per-sample", type=int, default=8,
                        help="how many of them the one-at-a-time loop runs (its rate is extrapolated)")
    parser.add_argument("--steps", type=int, default=20, help="feedback-propagation steps (paper: 20 at lr 0.001, "
                        "or 40 at lr 0.01)")
    parser.add_argument("--lr", type=float, default=0.001, help="Adam learning rate on the pivot")
    parser.add_argument("--dims", type=int, default=256, help="attention, embedding and decoder width (paper: 512)")
    parser.add_argument("--vocab", type=int, default=1000, help="words per language (paper: 10000)")
    parser.add_argument("--caption-len", type=int, default=12,
                        help="words of the longest given caption (lengths drawn from half of it to it); "
                             "also the longest decoded caption")
    parser.add_argument("--beam", type=int, default=5, help="beam size of the target-language decoding")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every measurement, alternating; each "
                        "variant's lower median is reported")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("batch", "per_sample", "image_size", "dims", "vocab", "caption_len", "beam", "threads", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.vocab < 4:
        parser.error("--vocab must be >= 4 (pad, bos and eos take three ids)")
    if args.pivot_layer is None:
        args.pivot_layer = "stage3" if args.arch == "spatial_cnn" else "layer3"
    args.per_sample = min(args.per_sample, args.batch)
    return args


def build(args: argparse.Namespace) -> PivotCaptioner:
    torch.manual_seed(args.seed)
    model = build_model("pivot", {
        "languages": [SOURCE, TARGET], "vocab_sizes": [args.vocab, args.vocab], "image_arch": args.arch,
        "pivot_layer": args.pivot_layer, "attention_dim": args.dims, "embed_dim": args.dims,
        "decoder_dim": args.dims, "max_caption_len": args.caption_len + 1,  # + EOS
    })
    return model.eval()


def random_captions(model: PivotCaptioner, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    """`[batch, caption_len + 2]`: BOS, words (ids above pad/bos/eos), EOS, right-padded; mixed lengths."""
    c = model.config
    lengths = torch.randint(max(1, args.caption_len // 2), args.caption_len + 1, (args.batch,), generator=generator)
    tokens = torch.full((args.batch, args.caption_len + 2), c.pad_id, dtype=torch.long)
    first_word = max(c.pad_id, c.bos_id, c.eos_id) + 1
    for i, n in enumerate(lengths.tolist()):
        tokens[i, 0] = c.bos_id
        tokens[i, 1:n + 1] = torch.randint(first_word, args.vocab, (n,), generator=generator)
        tokens[i, n + 1] = c.eos_id
    return tokens


def decode(model: PivotCaptioner, z: torch.Tensor, beam: int) -> list[list[int]]:
    """The translate path after feedback propagation: the rest of the encoder, then beam search."""
    with torch.no_grad():
        features = model.features_from_pivot(z)
    return model.generate(features, TARGET, beam_size=beam).tokens


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    if load > 0.5:
        print(f"warning: load average {load:.1f} on {cores} cores before starting; other processes will skew the "
              "timings" + (", multi-threaded ones most (try --threads 1)" if args.threads > 1 else ""))
    if args.pivot_layer not in pivot_layer_names(args.arch):
        raise SystemExit(f"--pivot-layer {args.pivot_layer!r} is not a layer of {args.arch}: "
                         f"{pivot_layer_names(args.arch)}")

    t0 = time.perf_counter()
    model = build(args)
    generator = torch.Generator().manual_seed(args.seed + 1)
    tokens = random_captions(model, args, generator)
    z0 = model.noise_pivot(args.batch, args.image_size, PIXEL_MEAN, PIXEL_STD, generator=generator)
    n = args.per_sample
    params = sum(p.numel() for p in model.parameters())
    print(f"pivot captioner: {args.arch} at {args.image_size} px, pivot {args.pivot_layer} z {tuple(z0.shape[1:])}, "
          f"{model.features_from_pivot(z0[:1]).shape[1]} attended positions, dims {args.dims}, vocabulary "
          f"{args.vocab} x 2, {params / 1e6:.1f} M parameters (built in {time.perf_counter() - t0:.1f} s)")
    lengths = (tokens != model.config.pad_id).sum(dim=1) - 2
    print(f"{args.batch} {SOURCE} captions of {int(lengths.min())}..{int(lengths.max())} words "
          f"({n} for the per-sample loop); {args.steps} Adam steps at lr {args.lr}; {TARGET} decoded with beam "
          f"{args.beam}, at most {args.caption_len + 1} tokens; {args.threads} thread(s), {args.repeat} round(s)")

    def fp_batched():
        return model.feedback_propagation(z0, [(SOURCE, tokens)], args.steps, args.lr)

    def fp_per_sample():
        return torch.cat([model.feedback_propagation(z0[i:i + 1], [(SOURCE, tokens[i:i + 1])], args.steps, args.lr)
                          for i in range(n)])

    # warm-up (first-call costs: allocator growth, thread pools, kernel choice), one step of each shape
    model.feedback_propagation(z0, [(SOURCE, tokens)], 1, args.lr)
    model.feedback_propagation(z0[:1], [(SOURCE, tokens[:1])], 1, args.lr)
    decode(model, z0[:2], args.beam)

    def decode_batched(z):
        return decode(model, z, args.beam)

    def decode_per_sample(z):
        return [decode(model, z[i:i + 1], args.beam)[0] for i in range(n)]

    # alternating rounds, so that a burst of load elsewhere hits both variants alike
    rounds = {"fp_b": [], "fp_s": [], "dec_b": [], "dec_s": []}
    for _ in range(args.repeat):
        z_batched, seconds = timed(fp_batched)
        rounds["fp_b"].append(seconds)
        z_single, seconds = timed(fp_per_sample)
        rounds["fp_s"].append(seconds)
        out_batched, seconds = timed(decode_batched, z_batched)
        rounds["dec_b"].append(seconds)
        out_single, seconds = timed(decode_per_sample, z_single)
        rounds["dec_s"].append(seconds)
    fp_b_s, fp_s_s, dec_b_s, dec_s_s = (sorted(r)[(args.repeat - 1) // 2] for r in rounds.values())

    z_diff = (z_batched[:n] - z_single).abs().max().item()
    moved = (z_batched - z0).abs().max().item()
    same_captions = sum(a == b for a, b in zip(out_batched[:n], out_single))
    decoded_len = sum(map(len, out_batched)) / len(out_batched)

    rows = [("feedback propagation", args.batch / fp_b_s, n / fp_s_s, fp_b_s, fp_s_s, "  (goal >= 10x)"),
            (f"decoding (beam {args.beam})", args.batch / dec_b_s, n / dec_s_s, dec_b_s, dec_s_s, ""),
            ("translate (both)", args.batch / (fp_b_s + dec_b_s), n / (fp_s_s + dec_s_s),
             fp_b_s + dec_b_s, fp_s_s + dec_s_s, "")]
    print(f"\n{'':24s} {'batched s':>9s} {'sent/s':>8s} {'per-sample s':>12s} {'sent/s':>8s} "
          f"{'batch est. s':>12s} {'batched/per-sample':>19s}")
    for name, rate_b, rate_s, seconds_b, seconds_s, goal in rows:
        print(f"{name:24s} {seconds_b:9.2f} {rate_b:8.1f} {seconds_s:12.2f} {rate_s:8.1f} "
              f"{args.batch / rate_s:12.2f} {rate_b / rate_s:18.1f}x{goal}")
    print(f"\nsame computation: max |z batched - z per sample| = {z_diff:.2e} over the first {n} samples "
          f"(z moved up to {moved:.2e} from z0); {same_captions}/{n} decoded {TARGET} captions identical; "
          f"mean decoded length {decoded_len:.1f} tokens")
    if same_captions < n:
        print("note: decoded captions differ; near-tied beam scores can flip under the tiny z differences")


if __name__ == "__main__":
    main()
