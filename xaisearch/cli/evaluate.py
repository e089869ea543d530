"""``xaisearch evaluate --composite FILE``: the metric table of one configuration.

Uses the study file's model, evaluation data and metrics (the same workbench as the search), so
the numbers are the ones a trial with this configuration would record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xaisearch.errors import InputError
from xaisearch.explain.config import load_config
from xaisearch.metrics.suite import summary
from xaisearch.models.ref import ModelRef
from xaisearch.search.table_methods import refuse_another_model, refuse_missing_layers
from xaisearch.spec import StudySpec


def evaluate_config(
    spec: StudySpec, composite: Path, out_dir: Path | None, as_json: bool
) -> dict[str, dict[str, tuple[float, float]]]:
    """``{arm: {metric: (mean, standard error)}}`` for the config (one arm: its canonizer); the
    table of every method canonized and not is ``compare_canonization``."""
    from xaisearch.cli.run import prepare_workbench

    try:
        config, _ = load_config(composite)  # every problem names the file and the field
    except InputError as error:
        raise InputError(f"--composite {error}") from None
    study_model = ModelRef(name=spec.model.name, num_classes=spec.model.num_classes, input_shape=spec.model.input_shape)
    refuse_another_model(composite, config.model_differences(study_model))  # before a model is trained for it
    console = Console(stderr=as_json)
    bench = prepare_workbench(spec, out_dir or Path("runs") / spec.name, console)
    refuse_missing_layers(composite, config.missing_layers({name for name, _ in bench.model.named_modules()}))
    arms = {f"canonizer {config.canonizer}": config}
    try:
        results = {
            arm: {name: summary(values) for name, values in bench.score(arm_config).items()}
            for arm, arm_config in arms.items()
        }
    except ValueError as error:  # a layer of the model the config gives no rule, a canonizer that does not fit
        raise InputError(f"--composite {composite}: {error}") from None
    if as_json:
        print(json.dumps({arm: {m: {"mean": v[0], "sem": v[1]} for m, v in r.items()} for arm, r in results.items()}))
        return results
    n_images = sum(len(b.x) for b in bench.batches)
    table = Table("metric", "better", *arms, title=f"{composite} on the search set ({n_images} images)")
    directions = {entry.metric.name: entry.effective_direction for entry in bench.suite.entries}
    for name in bench.suite.names:
        cells = []
        for arm in arms:
            mean, sem = results[arm][name]
            cells.append("nan" if not math.isfinite(mean) else f"{mean:.4f} ± {sem:.4f}")
        table.add_row(name, directions[name], *cells)
    console.print(table)
    return results
