"""Benchmark: the paper's canonization table reproduced on the mini zoo, directions beside the paper's.

For each mini model (``studies/demo.yaml``'s VGG and the ``demo-resnet``/``demo-efficientnet``/
``demo-densenet`` studies) the study's model is trained (or its cached checkpoint loaded from
``--run-dir``), then ``xaisearch.search.canonization_table.compare_canonization`` scores zennit's
``EpsilonPlus`` and ``EpsilonAlpha2Beta1`` and excitation backprop (the paper's three methods),
canonized and not, with the ``paper`` suite on ``--images`` images of the study's search set.

Printed per (model, method, metric): which arm is better and whether the paired test (Wilcoxon
signed-rank over images) finds it significant, beside the direction of Pahde et al.'s ImageNet
table (canonization.md, "the paper's results"). The paper's columns map to our metrics as
complexity = sparseness, faithfulness = faithfulness_correlation, RRA, RMA, robustness =
avg_sensitivity, randomisation = random_logit (that mapping is the reference's inference).
DenseNet runs twice: our default canonizer (``densenet.thresh_seq``) and the authors' rules
(``densenet.thresh_seq.paper``).

Run: ``python bench/canonization_effects.py [--models vgg,resnet,efficientnet,densenet]
[--images 32] [--run-dir runs/canonization-effects] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from xaisearch.search.canonization_table import CanonizationTable, compare_canonization
from xaisearch.search.table_methods import baseline_methods, choose, standard_composites
from xaisearch.search.workbench import Workbench
from xaisearch.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
STUDIES = {
    "vgg": "demo.yaml",
    "resnet": "demo-resnet.yaml",
    "efficientnet": "demo-efficientnet.yaml",
    "densenet": "demo-densenet.yaml",
}
PAPER_METHODS = {"epsilon_plus": "LRP-ε+", "epsilon_alpha2_beta1": "LRP-α2β1", "excitation_backprop": "EB"}
COLUMNS = {  # the paper's column -> our metric
    "complexity": "sparseness",
    "faithfulness": "faithfulness_correlation",
    "RRA": "relevance_rank_accuracy",
    "RMA": "relevance_mass_accuracy",
    "robustness": "avg_sensitivity",
    "randomisation": "random_logit",
}
# Pahde et al.'s ImageNet table: the better arm per (model, method, column); "=" where equal.
# (canonization.md, "the paper's results"; C = canonized better, U = uncanonized better)
PAPER = {
    "vgg": {
        "EB": "C C C C C =",
        "LRP-α2β1": "C C C C U U",
        "LRP-ε+": "C C C C U C",
    },
    "resnet": {
        "EB": "C = C C C =",
        "LRP-α2β1": "C = C C U C",
        "LRP-ε+": "C = C C U =",
    },
    "efficientnet": {
        "EB": "U C U U C U",
        "LRP-α2β1": "C U U U U C",
        "LRP-ε+": "C C = C U U",
    },
    "densenet": {
        "EB": "U C C C C U",
        "LRP-α2β1": "U C C C C U",
        "LRP-ε+": "U C C C C U",
    },
}


def table_for(model: str, canonizer: str | None, images: int, run_dir: Path) -> CanonizationTable:
    spec = load_spec(REPO / "studies" / STUDIES[model])
    updates = {"n_eval": images, "n_validation": images}
    data = spec.data.model_copy(update=updates)
    spec = spec.model_copy(update={"data": data, "metrics": [], "suite": "paper"})
    bench = Workbench.prepare(spec, run_dir / model, torch.device("cpu"))
    methods = choose(standard_composites(bench) + baseline_methods(bench), list(PAPER_METHODS))
    return compare_canonization(bench, methods, canonizer or bench.space.canonizer)


def directions(table: CanonizationTable, model: str) -> list[dict]:
    found = []
    for row in table.rows:
        paper_name = PAPER_METHODS[row.method.name]
        paper = PAPER[model][paper_name].split()
        for (column, metric), expected in zip(COLUMNS.items(), paper):
            pair = row.pairs[metric]
            ours = {"canonized": "C", "uncanonized": "U", "equal": "="}[pair.better]
            found.append(
                {
                    "model": model,
                    "canonizer": row.canonizer,
                    "method": paper_name,
                    "column": column,
                    "uncanonized": pair.uncanonized[0],
                    "canonized": pair.canonized[0],
                    "ours": ours,
                    "significant": pair.significant,
                    "p_value": pair.p_value,
                    "paper": expected,
                    "agrees": ours == expected,
                }
            )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(STUDIES))
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "canonization-effects")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    results = []
    for model in args.models.split(","):
        arms = [None, "densenet.thresh_seq.paper"] if model == "densenet" else [None]
        for canonizer in arms:
            start = time.perf_counter()
            table = table_for(model, canonizer, args.images, args.run_dir)
            rows = directions(table, model)
            results += rows
            agree = sum(r["agrees"] for r in rows)
            console.print(
                f"[{model}, {table.rows[0].canonizer}] {agree}/{len(rows)} directions as the paper "
                f"({table.images}, {time.perf_counter() - start:.0f} s)"
            )
            if not args.json:
                for r in rows:
                    star = "*" if r["significant"] else " "
                    console.print(
                        f"  {r['method']:<9} {r['column']:<13} {r['uncanonized']:8.4f} / {r['canonized']:8.4f}  "
                        f"ours {r['ours']}{star} paper {r['paper']}"
                    )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
