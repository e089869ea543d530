"""``xaisearch export``: the winner on held-out images (or a chosen trial) with its evidence."""

from __future__ import annotations

from pathlib import Path

import optuna
from rich.console import Console

from xaisearch.devices import resolve_device
from xaisearch.explain.config import ExplainerConfig
from xaisearch.search.export import export_trial, pick_trial, refuse_unfit_path
from xaisearch.search.study import SPEC_ATTR, WEIGHTS_DIR_ATTR, study_spec
from xaisearch.search.workbench import Workbench


def export_validated(study: optuna.Study, output: Path, trial: int | None, console: Console) -> ExplainerConfig:
    """Validate on the held-out images (stored scores are reused; the model is loaded only when a
    configuration has none yet), then write the winner, or trial ``trial``, with its evidence."""
    from xaisearch.cli.validation_report import sentences, validate_with_progress

    refuse_unfit_path(output, f"-o {str(output)!r}")
    if trial is not None:
        pick_trial(study, trial)  # an unknown trial number is refused before any model is loaded
    if SPEC_ATTR not in study.user_attrs:  # a study made with Optuna alone: nothing to validate with
        console.print("this study has no xaisearch spec: exported without held-out validation", style="yellow")
        return export_trial(study, output, trial, field="-o")
    spec = study_spec(study)
    made: list[Workbench] = []

    def bench() -> Workbench:
        if not made:
            run_dir = Path(study.user_attrs.get(WEIGHTS_DIR_ATTR) or Path("runs") / spec.name)
            made.append(Workbench.prepare(spec, run_dir, resolve_device(spec.device), allow_training=False))
        return made[0]

    outcome = validate_with_progress(study, spec, bench, console)
    number = trial if trial is not None or outcome is None else outcome.winner.candidate.trial
    config = export_trial(study, output, number, field="-o", evidence=outcome.evidence if outcome else None)
    for line in sentences(outcome, spec, study) if outcome is not None else []:
        console.print(line)
    return config
