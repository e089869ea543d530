"""Verify the registered canonizer of every torchvision BN family and time resnet50's apply + remove.

    python bench/canonize.py [--input-size 64] [--models resnet18 efficientnet_b0 ...] [--auto]
    python bench/canonize.py --timm [--models resnet50d dla34 ...]       # timm's families (needs timm)

Each model is built with random weights (1000 classes) and random BN statistics and checked with
``verify_canonizer`` in float32 (batch 2): BN coverage, max relative output difference, exact
restore, apply + remove time. ``--auto`` adds a row with the generic ``auto`` canonizer for each
model. DenseNets run through the registry's DenseNet canonizer when one is registered and are
skipped with a message otherwise. Prints a markdown table, then the resnet50 timing
(first round on a fresh model, then the median of 7 more).

``--timm`` runs ``TIMM_MODELS`` instead (``timm/<name>``, random weights and BN statistics, the
canonizer ``canonizer_name_for`` picks: ``auto`` with BatchNorm, ``none`` without) through
``canonize_named_model``, what ``xaisearch canonize --check`` runs: BatchNorms folded/total, the
max relative output difference in float32 and in float64, exact restore, the relevance
conservation error ``max |Σ R_in / logit − 1|`` of the epsilon-only composite on the bias-free
copy (``verify.relevance_checks``), the canonizer guard's verdict (``refused: <module>`` names the
first module whose output differs) and the wall time of all of it. A model without BatchNorm
(``convnext_atto``: LayerNorm) shows ``0/0`` and canonizer ``none``; its conservation error is
what LRP-ε with ``Pass`` on the norms leaves, not a canonizer's. One model takes 5-60 s on 2 CPU
cores at 64 px; the whole list about 10 minutes.
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


# one architecture per family, for --timm (timm 1.0; every one builds with pretrained=False)
TIMM_MODELS = {
    "resnet50d": "ResNet-D",
    "seresnext26d_32x4d": "SE-ResNeXt",
    "ecaresnet26t": "ECA-ResNet",
    "skresnet18": "SK-ResNet (selective kernel)",
    "res2net50_14w_8s": "Res2Net",
    "resnest14d": "ResNeSt (split attention)",
    "regnetx_002": "RegNetX",
    "regnety_002": "RegNetY (SE)",
    "dpn68": "DPN (dual path)",
    "densenet121": "DenseNet (timm's)",
    "dla34": "DLA",
    "hrnet_w18_small": "HRNet",
    "cspresnet50": "CSPNet",
    "vovnet39a": "VoVNet",
    "mobilenetv3_small_100": "MobileNetV3 (hard-swish, SE)",
    "efficientnet_b0": "EfficientNet (BatchNormAct)",
    "tf_efficientnet_lite0": "EfficientNet-Lite (TF padding)",
    "mixnet_s": "MixNet (mixed kernels)",
    "semnasnet_100": "MnasNet (SE)",
    "rexnet_100": "ReXNet",
    "ghostnet_100": "GhostNet",
    "convnext_atto": "ConvNeXt (LayerNorm, no BN)",
}


def timm_table(models: list[str], input_size: int) -> None:
    """The --timm markdown table (see the module docstring)."""
    from xaisearch.canonize.check import canonize_named_model
    from xaisearch.errors import InputError

    print(f"timm, input 2×3×{input_size}², float32 and float64 (the guard: float64, 2 images)\n")
    print(
        "| model | family | canonizer | BN folded/total | max rel float32 | max rel float64 | restored "
        "| Σ R_in / logit − 1 | guard | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in models:
        started = time.perf_counter()
        family = TIMM_MODELS.get(name, "")
        try:
            outcome = canonize_named_model(f"timm/{name}", input_size=input_size, check=True, atomicity=False)
        except InputError as error:
            print(f"| {name} | {family} | – | – | – | – | – | – | error: {str(error)[:100]} | – |", flush=True)
            continue
        report, checked, guard = outcome.report, outcome.checked, outcome.guard
        assert checked is not None and checked.conservation_error is not None  # check=True measures both
        restored = "yes" if report.restored_exactly and checked.restored_exactly else "NO"
        verdict = "ok" if guard.dtype != "-" else "– (nothing to check)"
        if not guard.passed():
            verdict = f"refused: {guard.diverging}" if guard.diverging else f"refused: {guard.restore_problems[0]}"
        print(
            f"| {name} | {family} | {report.canonizer} | {report.bn_folded}/{report.bn_total} "
            f"| {report.max_rel_diff:.1e} | {checked.max_rel_diff:.1e} | {restored} "
            f"| {checked.conservation_error:.1e} | {verdict} | {time.perf_counter() - started:.1f} |",
            flush=True,
        )


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
    parser.add_argument(
        "--timm",
        action="store_true",
        help="verify timm's families instead (TIMM_MODELS, or the timm names given with --models)",
    )
    args = parser.parse_args()
    if args.timm:
        given = parser.get_default("models") != args.models
        timm_table([m.removeprefix("timm/") for m in args.models] if given else list(TIMM_MODELS), args.input_size)
        return
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
