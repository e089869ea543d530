"""Verify the registered canonizer of every torchvision BN family and time resnet50's apply + remove.

    python bench/canonize.py [--input-size 64] [--models resnet18 efficientnet_b0 ...] [--auto]

Each model is built with random weights (1000 classes) and random BN statistics and checked with
``verify_canonizer`` in float32 (batch 2): BN coverage, max relative output difference, exact
restore, apply + remove time. ``--auto`` adds a row with the generic ``auto`` canonizer for each
model. DenseNets run through the registry's DenseNet canonizer when one is registered and are
skipped with a message otherwise. Prints a markdown table, then the resnet50 timing
(first round on a fresh model, then the median of 7 more).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

FAMILIES = {
    "vgg": ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"],
    "resnet": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
    "resnext": ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"],
    "wide": ["wide_resnet50_2", "wide_resnet101_2"],
    "efficientnet": [f"efficientnet_b{i}" for i in range(8)],
    "densenet": ["densenet121", "densenet161", "densenet169", "densenet201"],
}


def time_resnet50(name: str = "resnet", rounds: int = 7) -> tuple[float, float]:
    """Seconds of the first ``apply`` + ``remove`` of canonizer ``name`` on a fresh resnet50, and the
    median of ``rounds`` more (later rounds reuse memory the allocator already mapped, and ``auto``
    its traced plan: faster). A new canonizer each round, as zennit composites build them."""
    import torchvision

    from xaisearch.canonize import get_canonizer

    model = torchvision.models.resnet50().eval()
    seconds = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        handles = get_canonizer(name).apply(model)
        for handle in reversed(handles):
            handle.remove()
        seconds.append(time.perf_counter() - started)
    return seconds[0], statistics.median(seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--models", nargs="*", default=[name for names in FAMILIES.values() for name in names])
    parser.add_argument("--auto", action="store_true", help="also verify the generic 'auto' canonizer")
    parser.add_argument(
        "--float64",
        action="store_true",
        help="verify in float64 (goal ≤ 1e-10) and add relevance conservation of the epsilon-only composite "
        "on the bias-free copy (goal within 1e-4) and batch = one-by-one attributions",
    )
    args = parser.parse_args()
    dtype = "float64" if args.float64 else "float32"

    from xaisearch.canonize import available
    from xaisearch.canonize.check import check_named_model

    has_densenet = any(name.startswith("densenet") for name in available())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input 2×3×{args.input_size}², {dtype}\n")
    extra = " | worst Σ R_in / logit − 1 | batch vs single" if args.float64 else ""
    print(f"| model | canonizer | bn_total | bn_folded | max_rel_diff {dtype} | restored | apply+remove s{extra} |")
    print("|---|---|---|---|---|---|---|" + ("---|---|" if args.float64 else ""))
    failures = []
    for model in args.models:
        if model.startswith("densenet") and not has_densenet:
            print(f"| {model} | – | – | – | – | – | skipped: no DenseNet canonizer registered |")
            continue
        for canonizer in [None] + (["auto"] if args.auto else []):
            report = check_named_model(
                model, canonizer, input_size=args.input_size, dtype=dtype, relevance=args.float64
            )
            seconds = report.apply_seconds + report.remove_seconds
            row = (
                f"| {model} | {report.canonizer} | {report.bn_total} | {report.bn_folded} | "
                f"{report.max_rel_diff:.1e} | {'yes' if report.restored_exactly else 'NO'} | {seconds:.3f} |"
            )
            if args.float64:
                row += f" {report.conservation_error:.1e} | {report.batch_rel_diff:.1e} |"
            print(row, flush=True)
            if not report.passed() or (canonizer is None and report.unfolded):
                failures.append(f"{model} ({report.canonizer}): unfolded {list(report.unfolded)[:5]}")
    print()
    for name in ("resnet", "auto") if args.auto else ("resnet",):
        first, median = time_resnet50(name)
        print(f"resnet50 ({name!r}), apply + remove: first {first:.3f} s, then median {median:.3f} s (goal < 0.5 s)")
    for failure in failures:
        print(f"FAILED {failure}")


if __name__ == "__main__":
    main()
