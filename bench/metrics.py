"""Benchmark: the ``paper`` metric suite through ``MetricSuite`` vs Quantus 0.6.0 vs the model passes alone.

One run, the same inputs: a mini VGG (random weights, random BN statistics) at 48 px, N shapes
scenes with masks, LRP ε-plus-flat explanations (zennit, BN folded by our VGG canonizer).

* (a) ``MetricSuite(suite_entries("paper", 48)).score`` — trial 1 (cold per-batch caches) and
  trial 2 (warm: clean outputs, random subsets and their outputs, noise and classes cached);
* (b) the same metrics driven by Quantus 0.6.0, our explainer as ``explain_func``
  (RegionPerturbation with the "black" baseline: Quantus' blur function does not run in its
  batched path), three ways:
  - ``matched``: ``a_batch`` given, the same settings; PixelFlipping takes 108 steps, the nearest
    Quantus allows to our 112 (its step must divide the 6912 channel values);
  - ``matched, channels-last model``: the same with the model converted by hand to channels-last
    (what xaisearch does by itself on a CPU, ``metrics/execution.py``);
  - ``as the paper ran it``: ``a_batch=None`` (every metric explains its batch again, as
    ``run_evaluation`` of Pahde et al.) and the paper's PixelFlipping setting under 0.6.0's
    channel-value features (3x the steps; 288 here, the nearest divisor below 3 x 108);
* (c) the passes a trial needs, timed alone (DESIGN §4) through the same execution helpers
  (layout, chunks): the scored explanations, the perturbation-curve forwards, 10 noisy + 1
  other-class explanations per image; the random-subset forwards only in trial 1.

Ratio to the limit = suite time / passes-alone time (goal ≤ 1.15); speed-up = Quantus / suite
(goal ≥ 3× on CPU). Run: ``python bench/metrics.py [--images 32] [--threads 1] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def build(images: int, device: torch.device):
    from xaisearch.canonize.verify import randomize_batchnorm
    from xaisearch.data.shapes import generate
    from xaisearch.models.mini import mini_vgg

    torch.manual_seed(0)
    model = mini_vgg(num_classes=4, image_size=48).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model = model.to(device)
    scenes = generate(images, seed=3, split="val", image_size=48)
    x = torch.from_numpy(scenes.x).to(device)
    y = torch.from_numpy(scenes.y).long().to(device)
    s = torch.from_numpy(scenes.mask("target")).to(device)
    return model, x, y, s.view(len(x), 1, 48, 48).float()


def lrp_method(model, x, y):
    from zennit.composites import EpsilonPlusFlat

    from xaisearch.canonize.registry import get_canonizer
    from xaisearch.explain.methods import attribute

    return attribute(model, EpsilonPlusFlat(canonizers=[get_canonizer("vgg", model)]), x, y)


CLOCK = {"fn": time.perf_counter}


def timed(fn, sync):
    """Seconds of ``fn``: wall time on a GPU, process CPU time on a CPU (with one thread this is
    robust to other processes on a shared machine, as reference/metrics.md §3 measured)."""
    clock = CLOCK["fn"]
    sync()
    start = clock()
    out = fn()
    sync()
    return clock() - start, out


def passes_alone(model, x, y, metrics, first_trial: bool, sync) -> tuple[float, str]:
    """Time the model passes one trial needs, nothing else (the suite's layout and chunks)."""
    from xaisearch.metrics.execution import chunk_size, explain_in_chunks, forward

    names = {m.name: m for m in metrics}
    forwards = names["pixel_flipping"].steps + names["region_perturbation"].regions
    if first_trial:
        forwards += names["faithfulness_correlation"].runs + 2  # + clean outputs (logits, probabilities)
    per_chunk = chunk_size(x, names["pixel_flipping"].memory_budget)
    noisy = names["avg_sensitivity"].samples

    def explain(xs, ys):
        return lrp_method(model, xs, ys)

    def run():
        with torch.no_grad():
            for first in range(0, forwards, per_chunk):
                copies = min(per_chunk, forwards - first)
                forward(model, x.repeat(copies, 1, 1, 1))
        explain_in_chunks(explain, model, x, y)  # the scored map
        explain_in_chunks(explain, model, x.repeat(noisy, 1, 1, 1), y.repeat(noisy))  # shared noisy copies
        explain_in_chunks(explain, model, x, (y + 1) % 4)  # random other class

    seconds, _ = timed(run, sync)
    return seconds, f"{forwards} F + {2 + noisy} E per image"


QUANTUS_WAYS = {
    "matched": "Quantus, matched (same settings, a_batch given)",
    "channels_last": "Quantus, matched, channels-last model by hand",
    "paper": "Quantus as the paper ran it (re-explains, 0.6.0 PF steps)",
}


def quantus_run(model, x, y, s, a, device, sync, way: str) -> float:
    """Seconds of the paper suite through Quantus 0.6.0 (``way``: a key of ``QUANTUS_WAYS``)."""
    import copy

    import quantus

    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # metrics.md §2.4 #8
    if way == "channels_last":
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def explain_func(model, inputs, targets, **kwargs):
        xs = torch.as_tensor(inputs, dtype=torch.float32, device=device)
        return lrp_method(model, xs, torch.as_tensor(targets, device=device).long()).sum(1, keepdim=True).cpu().numpy()

    pixels = 48 * 48
    features_in_step = 24 if way == "paper" else 3 * pixels // 108  # 288 channel-value steps vs 108
    common = {"disable_warnings": True, "display_progressbar": False}
    metrics = [
        quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline="black", **common),
        quantus.RegionPerturbation(patch_size=3, regions_evaluation=50, perturb_baseline="black", **common),
        quantus.FaithfulnessCorrelation(
            nr_runs=100, subset_size=3 * int(0.01 * pixels), return_aggregate=False, **common
        ),
        quantus.AvgSensitivity(nr_samples=10, lower_bound=0.2, **common),
        quantus.MaxSensitivity(nr_samples=10, lower_bound=0.2, **common),
        quantus.RelevanceRankAccuracy(abs=True, **common),
        quantus.RelevanceMassAccuracy(abs=True, **common),
        quantus.Sparseness(**common),
        quantus.Complexity(**common),
        quantus.RandomLogit(num_classes=4, **common),
    ]
    xn, yn, sn = x.cpu().numpy(), y.cpu().numpy(), s.cpu().numpy()
    an = None if way == "paper" else a.sum(1, keepdim=True).cpu().numpy()
    state = np.random.get_state()

    def run():
        if an is not None:  # Quantus is given the scored map: its explanation counts
            explain_func(model, xn, yn)
        for metric in metrics:
            metric(
                model=model,
                x_batch=xn,
                y_batch=yn,
                a_batch=an,
                s_batch=sn,
                explain_func=explain_func,
                device=str(device),
                batch_size=len(xn),
            )

    seconds, _ = timed(run, sync)
    np.random.set_state(state)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--memory-budget",
        type=int,
        default=None,
        help="bytes per perturbed forward; default 4 MiB on CPU, 256 MiB on GPU",
    )
    parser.add_argument("--repeats", type=int, default=3, help="each time is the minimum over repeats")
    parser.add_argument("--skip-quantus", action="store_true")
    parser.add_argument(
        "--release-freed-memory",
        action="store_true",
        help="leave glibc's malloc as it is (the CLI keeps freed memory, xaisearch/allocator.py)",
    )
    args = parser.parse_args()
    if not args.release_freed_memory:
        from xaisearch.allocator import keep_freed_memory

        keep_freed_memory()  # the process-wide setting of every xaisearch CLI process: Quantus gains too
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cpu":
        CLOCK["fn"] = time.process_time

    from xaisearch.metrics import MetricSuite, ModelExplainer, suite_entries
    from xaisearch.metrics.suite import EvalBatch

    model, x, y, s = build(args.images, device)
    budget = args.memory_budget or (4 * 2**20 if device.type == "cpu" else 256 * 2**20)
    entries = suite_entries("paper", 48, memory_budget=budget)
    explainer = ModelExplainer(model, lrp_method)
    batches = [EvalBatch(x, y, s)]
    lrp_method(model, x[:2], y[:2])  # warm-up (lazy imports, allocator)

    metrics = [e.metric for e in entries]
    ways = [] if args.skip_quantus else list(QUANTUS_WAYS)
    times: dict[str, list[float]] = {k: [] for k in ("cold", "warm", "alone_cold", "alone_warm", *ways)}
    a = explainer(x, y)
    for _ in range(args.repeats):  # interleaved, minimum kept: the machine may be shared
        suite = MetricSuite(entries)  # fresh caches: trial 1 is cold
        seconds, scores = timed(lambda suite=suite: suite.score(model, batches, explainer), sync)
        times["cold"].append(seconds)
        times["warm"].append(timed(lambda suite=suite: suite.score(model, batches, explainer), sync)[0])
        seconds, work_cold = passes_alone(model, x, y, metrics, True, sync)
        times["alone_cold"].append(seconds)
        seconds, work_warm = passes_alone(model, x, y, metrics, False, sync)
        times["alone_warm"].append(seconds)
        for way in ways:
            times[way].append(quantus_run(model, x, y, s, a, device, sync, way))
    best = {k: min(v) if v else float("nan") for k, v in times.items()}
    cold, warm = best["cold"], best["warm"]

    print(
        f"device {device}, threads {args.threads}, {args.images} images 3x48x48, mini VGG, LRP eps-plus-flat, "
        f"memory budget {budget / 2**20:g} MiB, freed memory {'released' if args.release_freed_memory else 'kept'}, "
        f"{'CPU' if device.type == 'cpu' else 'wall'} seconds, min of {args.repeats}\n"
    )
    print("| run | passes | suite s | passes alone s | ratio to limit |")
    print("|---|---|---|---|---|")
    for label, seconds, alone, work in (
        ("trial 1 (cold caches)", cold, best["alone_cold"], work_cold),
        ("trial 2+ (warm caches)", warm, best["alone_warm"], work_warm),
    ):
        print(f"| {label} | {work} | {seconds:.2f} | {alone:.2f} | {seconds / alone:.2f} |")
    if ways:
        print("\n| Quantus 0.6.0 | s | speed-up vs trial 1 | speed-up vs trial 2+ |")
        print("|---|---|---|---|")
        for way in ways:
            print(f"| {QUANTUS_WAYS[way]} | {best[way]:.2f} | {best[way] / cold:.1f}x | {best[way] / warm:.1f}x |")
    print("\nmeans:", {k: round(float(v.nanmean()), 4) for k, v in scores.items()})
    print(
        f"\ncommand: python bench/metrics.py --images {args.images} --threads {args.threads} --device {args.device}"
        f" --repeats {args.repeats} --memory-budget {budget}{' --release-freed-memory' * args.release_freed_memory}"
    )


if __name__ == "__main__":
    main()
