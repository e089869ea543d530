"""How far our DenseNet canonizers' attributions are from Pahde et al.'s own, default and ``.paper`` forms.

    python bench/densenet_paper_rules.py [--size 224] [--images 1] [--variants thresh_seq ...]

torchvision ``densenet121`` (1000 classes) with random weights and random BN statistics and affine
parameters (``verify.randomize_batchnorm``), inputs ``randn`` clamped to [-3, 3] (the
``EpsilonGammaBox`` bounds), one random target class per image. The authors' formulation is
``xaisearch.testing.densenet_reference`` (their mechanisms restated: hooked thresholds that take
the plain gradient, a hooked shift map that rules never see, functional ReLU and pooling in the
untangled model). For each variant and each of zennit's ``EpsilonPlus``, ``EpsilonGammaBox`` and
``EpsilonAlpha2Beta1``, the table gives the per-image cosine similarity (min over the images) of
``densenet.<variant>`` (as ``cos``) and of ``densenet.<variant>.paper`` (as ``1 − cos``) with the
reference's attributions, the largest logit difference of the reference and the canonized models
from the original (relative to the largest logit), and the row's wall time (its three
attributions). On 1 CPU thread at 224 px a row takes 6-13 s (thresh_seq, seq_thresh) to 25-40 s
(untangled) per image: the whole table for one image, about 3 minutes.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from xaisearch.canonize import get_canonizer
from xaisearch.canonize.densenet import PAPER_VARIANTS
from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.testing.densenet_reference import (
    COMPOSITES,
    attributions,
    cosine,
    reference_canonized,
    zennit_composite,
)

LOW, HIGH = -3.0, 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(PAPER_VARIANTS), choices=PAPER_VARIANTS)
    parser.add_argument("--composites", nargs="+", default=list(COMPOSITES), choices=COMPOSITES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = torchvision.models.densenet121().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(args.seed + 1))
    generator = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(args.images, 3, args.size, args.size, generator=generator).clamp(LOW, HIGH)
    target = torch.randint(0, 1000, (args.images,), generator=generator)
    with torch.no_grad():
        logits = model(x)
    scale = float(logits.abs().max())
    print(
        f"densenet121, random weights and BN statistics, {args.images} image(s) at {args.size} px, "
        f"zennit {_zennit_version()}, torch threads {torch.get_num_threads()}"
    )
    print()
    columns = ["variant", "composite", "default vs authors: cos", ".paper vs authors: 1 − cos"]
    columns += ["max rel. Δlogit (ref / default / paper)", "s"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for variant in args.variants:
        reference = reference_canonized(model, variant)
        with torch.no_grad():
            differences = [float((reference(x) - logits).abs().max()) / scale]
        for name in (f"densenet.{variant}", f"densenet.{variant}.paper"):
            differences.append(_logit_difference(model, name, x, logits) / scale)
        for composite in args.composites:
            start = time.perf_counter()
            expected = attributions(reference, zennit_composite(composite, [], LOW, HIGH), x, target)
            similarity = []
            for name in (f"densenet.{variant}", f"densenet.{variant}.paper"):
                ours = attributions(model, zennit_composite(composite, [get_canonizer(name)], LOW, HIGH), x, target)
                similarity.append(float(cosine(ours, expected).min()))
            seconds = time.perf_counter() - start
            cells = [variant, composite, f"{similarity[0]:.4f}", f"{1 - similarity[1]:.1e}"]
            cells += [" / ".join(f"{d:.1e}" for d in differences), f"{seconds:.0f}"]
            print("| " + " | ".join(cells) + " |", flush=True)


def _logit_difference(model: torch.nn.Module, name: str, x: torch.Tensor, logits: torch.Tensor) -> float:
    handles = get_canonizer(name).apply(model)
    try:
        with torch.no_grad():
            return float((model(x) - logits).abs().max())
    finally:
        for handle in handles:
            handle.remove()


def _zennit_version() -> str:
    from importlib import metadata

    return metadata.version("zennit")


if __name__ == "__main__":
    main()
