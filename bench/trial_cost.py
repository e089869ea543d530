"""Benchmark: one search trial's wall time against the sum of its model passes timed alone (DESIGN §4).

A trial is measured as a worker runs it: ``Objective(workbench)(trial)`` on an in-memory Optuna
study, the same configuration enqueued for every trial (a seed composite of the study's space,
``--config``), heatmap artifacts off. A warm-up trial first fills the worker's caches (clean
outputs, random subsets and their outputs, noise draws, other classes), as for every trial after
a worker's first. Then one trial runs with recording on:

* a forward pre-hook on the model records every forward outside an explanation (input shape,
  strides, dtype, device, grad mode; the first input of each kind is kept);
* the workbench's explainer is wrapped, so every explanation call is recorded (the model it
  explains, input shape and strides, the first input and targets of each kind);
* each metric of the suite is wrapped, so each pass is charged to the metric that made it (or to
  the scored explanation), and the trial's time per metric is taken.

Each round then times one plain trial (no hooks, no wrappers) and replays every kind of pass
alone on the kept tensor (same shape, device, dtype and memory layout, so channels-last on a CPU
as ``metrics/execution.py`` passes them), ``--repeats`` times but never more often than the trial
ran it (a replay costs at most what the trial spent on that kind: one 16-image explanation of
VGG-16 is two minutes on one CPU thread); the median of the repeats times the count is the cost
of those passes. Two sums:

* **calls**: an explanation replayed as the explainer call the trial makes (composite registered,
  canonizer applied and removed, model state restored, as ``explain.methods.attribute``);
* **pure**: an explanation replayed as its modified forward and backward alone, inside one
  registered composite (what DESIGN §4 calls E).

ratio = trial wall time / passes alone (goal ≤ 1.15), one per round; the median and range over
rounds are reported, with a breakdown of passes and time by metric.

Cases: ``mini``, the demo study (``studies/demo.yaml``: the mini VGG it trains, its 128 images,
its four metrics; the checkpoint of ``runs/demo`` is reused when its recipe matches, else the
model is trained once into ``--run-dir``); ``vgg16`` and ``resnet50``, torchvision's VGG-16-BN
and ResNet-50 at 224 px with random weights (seeded, saved into ``--run-dir`` so the workbench
loads them as a study's ``model.weights``), ``--images`` shapes scenes at 224 px in one batch,
the ``paper`` suite, the ``vgg``/``resnet`` canonizers.

Run: ``python bench/trial_cost.py [--cases mini,vgg16,resnet50] [--images 2] [--repeats 3]
[--rounds 3] [--device cpu|cuda] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaisearch.explain.config import ExplainerConfig
from xaisearch.search.workbench import Workbench
from xaisearch.spec import StudySpec

CASES = ("mini", "vgg16", "resnet50")
TORCHVISION_CASES: dict[str, tuple[str, str]] = {"vgg16": ("vgg16_bn", "vgg"), "resnet50": ("resnet50", "resnet")}
REPO = Path(__file__).resolve().parents[1]
SCORED = "scored explanation"  # passes of MetricSuite.score outside any metric
OUTSIDE = "objective, outside the suite"  # Objective's own work: sampling, attributes, summaries

Sync = Callable[[], None]


@dataclass(frozen=True)
class Seconds:
    """Wall and process-CPU seconds of one piece of work (CPU time: robust on a shared machine)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __add__(self, other: Seconds) -> Seconds:
        return Seconds(self.wall + other.wall, self.cpu + other.cpu)

    def __sub__(self, other: Seconds) -> Seconds:
        return Seconds(self.wall - other.wall, self.cpu - other.cpu)

    def __mul__(self, factor: float) -> Seconds:
        return Seconds(self.wall * factor, self.cpu * factor)

    def of(self, clock: str) -> float:
        return self.wall if clock == "wall" else self.cpu


def median(values: list[Seconds]) -> Seconds:
    return Seconds(statistics.median(v.wall for v in values), statistics.median(v.cpu for v in values))


def now() -> Seconds:
    return Seconds(time.perf_counter(), time.process_time())


# -- the cases ---------------------------------------------------------------------------------
def demo_spec() -> StudySpec:
    from xaisearch.spec import load_spec

    return load_spec(REPO / "studies" / "demo.yaml")


def torchvision_spec(case: str, images: int, weights: Path) -> StudySpec:
    """A study of a torchvision model with random weights on ``images`` shapes scenes at 224 px, the paper suite."""
    from xaisearch.spec import parse_spec

    name, canonizer = TORCHVISION_CASES[case]
    rules = ["gamma", "epsilon", "zplus"]
    return parse_spec(
        {
            "name": f"trial_cost_{case}",
            "n_trials": 1,
            "model": {"name": name, "num_classes": 1000, "input_shape": [3, 224, 224], "weights": str(weights)},
            "data": {"name": "shapes", "n_eval": images, "seed": 1, "batch_size": images},
            "canonizer": canonizer,
            "search_space": {
                "layer_groups": "depth",
                "groups": {
                    "low": {"rules": rules},
                    "mid": {"rules": rules},
                    "high": {"rules": rules},
                    "dense": {"rules": ["epsilon"]},
                },
                "first_layer": ["zbox", "flat"],
                "ranges": {
                    "epsilon": {"low": 1.0e-6, "high": 1.0, "log": True},
                    "gamma": {"low": 1.0e-3, "high": 10.0, "log": True},
                },
            },
            "suite": "paper",
        },
        f"trial_cost {case}",
    )


def random_weights(case: str, run_dir: Path) -> Path:
    """Seeded random weights of the case's torchvision model, saved once as a checkpoint."""
    from xaisearch.models.ref import ModelRef
    from xaisearch.models.zoo import build_architecture

    name, _ = TORCHVISION_CASES[case]
    path = run_dir / f"{name}-random.pt"
    if not path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = build_architecture(ModelRef(name=name, num_classes=1000, input_shape=(3, 224, 224)))
        torch.save(model.state_dict(), path)
    return path


def mini_run_dir(spec: StudySpec, run_dir: Path) -> Path:
    """``runs/demo`` when it holds the demo's trained checkpoint (same recipe), else ``run_dir``."""
    from xaisearch.search.model_preparation import CHECKPOINT_NAME, RECORD_NAME, recipe_hash

    demo = Path("runs") / spec.name
    record = demo / RECORD_NAME
    if (demo / CHECKPOINT_NAME).is_file() and record.is_file():
        if json.loads(record.read_text()).get("recipe") == recipe_hash(spec.model):
            return demo
    return run_dir


def prepare(case: str, images: int, run_dir: Path, device: torch.device) -> Workbench:
    if case == "mini":
        spec = demo_spec()
        return Workbench.prepare(spec, mini_run_dir(spec, run_dir / "mini"), device)
    folder = run_dir / case
    spec = torchvision_spec(case, images, random_weights(case, folder).resolve())
    return Workbench.prepare(spec, folder, device)


# -- recording ---------------------------------------------------------------------------------
@dataclass
class PassKind:
    """One kind of model pass: what a replay needs (model, an input, targets) and how often it ran."""

    kind: str  # "forward" or "explanation"
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor | None
    grad: bool
    counts: dict[str, int] = field(default_factory=dict)  # phase -> calls

    @property
    def label(self) -> str:
        channels_last = not self.x.is_contiguous() and self.x.is_contiguous(memory_format=torch.channels_last)
        layout = "channels-last" if channels_last else ("contiguous" if self.x.is_contiguous() else "strided")
        grad = "" if self.kind == "explanation" else (", grad" if self.grad else ", no grad")
        return f"{self.kind} {tuple(self.x.shape)} {layout}{grad}"


def signature(kind: str, model: nn.Module, x: torch.Tensor, grad: bool) -> tuple[Any, ...]:
    return (kind, id(model), tuple(x.shape), x.stride(), x.dtype, str(x.device), grad)


@dataclass
class Recorder:
    """The passes of one trial by kind, and the trial's wall time per phase (metric)."""

    sync: Sync
    kinds: dict[tuple[Any, ...], PassKind] = field(default_factory=dict)
    phase: str = SCORED
    depth: int = 0  # > 0 inside an explanation: its own forwards belong to it
    phase_seconds: dict[str, Seconds] = field(default_factory=dict)

    def record(self, kind: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> None:
        grad = torch.is_grad_enabled()
        key = signature(kind, model, x, grad)
        if key not in self.kinds:
            kept_y = None if y is None else y.detach().clone()
            self.kinds[key] = PassKind(kind, model, x.detach().clone(), kept_y, grad)
        counts = self.kinds[key].counts
        counts[self.phase] = counts.get(self.phase, 0) + 1

    def forward_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self.depth == 0 and args and isinstance(args[0], torch.Tensor):
            self.record("forward", module, args[0], None)

    def explaining(
        self, method: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
        def recorded(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            self.record("explanation", model, x, y)
            self.depth += 1
            try:
                return method(model, x, y)
            finally:
                self.depth -= 1

        return recorded

    def add_time(self, phase: str, seconds: Seconds) -> None:
        self.phase_seconds[phase] = self.phase_seconds.get(phase, Seconds()) + seconds


class PhaseMetric:
    """A suite's metric that charges its passes and its time to itself (recording trial only)."""

    def __init__(self, metric: Any, recorder: Recorder) -> None:
        self._metric, self._recorder = metric, recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)

    def __call__(self, ctx: Any) -> torch.Tensor:
        recorder = self._recorder
        recorder.phase = self._metric.name
        recorder.sync()
        start = now()
        try:
            return self._metric(ctx)
        finally:
            recorder.sync()
            recorder.add_time(self._metric.name, now() - start)
            recorder.phase = SCORED


@contextmanager
def recording(bench: Workbench, recorder: Recorder) -> Iterator[None]:
    """Hooks on the model, a recording explainer and phase-charging metrics, removed afterwards."""
    from xaisearch.metrics.base import ModelExplainer
    from xaisearch.metrics.suite import WeightedMetric

    handle = bench.model.register_forward_pre_hook(recorder.forward_hook)
    entries, explainer_of, score = bench.suite.entries, bench.explainer, bench.suite.score

    def explainer(config: ExplainerConfig) -> ModelExplainer:
        plain = explainer_of(config)
        return ModelExplainer(plain.model, recorder.explaining(plain.method))

    def timed_score(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        recorder.sync()
        start = now()
        try:
            return score(*args, **kwargs)
        finally:
            recorder.sync()
            recorder.add_time("suite", now() - start)

    bench.suite.entries = [
        WeightedMetric(PhaseMetric(e.metric, recorder), e.weight, e.direction)  # type: ignore[arg-type]
        for e in entries
    ]
    bench.explainer = explainer  # type: ignore[method-assign]  # this instance only
    bench.suite.score = timed_score  # type: ignore[method-assign]
    try:
        yield
    finally:
        handle.remove()
        bench.suite.entries = entries
        del bench.explainer, bench.suite.score


# -- timing ------------------------------------------------------------------------------------
def synchroniser(device: torch.device) -> Sync:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def seconds_of(fn: Callable[[], object], sync: Sync) -> Seconds:
    sync()
    start = now()
    fn()
    sync()
    return now() - start


class TrialRunner:
    """Trials as a worker runs them: ``Objective`` on one in-memory study, the same config each time."""

    def __init__(self, bench: Workbench, params: dict[str, Any], sync: Sync) -> None:
        import optuna

        from xaisearch.search.objective import Objective

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(directions=bench.directions())
        self.objective, self.params, self.sync = Objective(bench), params, sync

    def __call__(self) -> Seconds:
        """Seconds of one trial (the objective call; Optuna's ask and tell are not counted)."""
        self.study.enqueue_trial(self.params)
        trial = self.study.ask()
        values: list[Any] = []
        seconds = seconds_of(lambda: values.append(self.objective(trial)), self.sync)
        self.study.tell(trial, values[0])
        return seconds


def time_forward(kind: PassKind, repeats: int, sync: Sync) -> list[Seconds]:
    with torch.set_grad_enabled(kind.grad):
        return [seconds_of(lambda: kind.model(kind.x), sync) for _ in range(repeats)]


def time_explanation_call(
    kind: PassKind, method: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], repeats: int, sync: Sync
) -> list[Seconds]:
    assert kind.y is not None
    with torch.enable_grad():  # as explain_in_chunks calls it
        return [seconds_of(lambda: method(kind.model, kind.x, kind.y), sync) for _ in range(repeats)]


def time_explanation_pass(kind: PassKind, config: ExplainerConfig, repeats: int, sync: Sync) -> list[Seconds]:
    """The modified forward and backward alone: composite registered once, outside the timing."""
    from zennit.attribution import Gradient

    from xaisearch.explain.methods import build_composite, one_hot_target
    from xaisearch.integrity import preserved_state

    y = kind.y
    assert y is not None
    composite = build_composite(config, kind.model)
    with torch.enable_grad(), preserved_state(kind.model), Gradient(kind.model, composite) as attributor:

        def output_relevance(out: torch.Tensor) -> torch.Tensor:
            return one_hot_target(y, out.shape[-1], out.dtype)

        return [seconds_of(lambda: attributor(kind.x.detach().clone(), output_relevance), sync) for _ in range(repeats)]


@dataclass
class Replay:
    """Median seconds of each kind of pass alone, as the explainer call and as the pure pass."""

    call: dict[tuple[Any, ...], Seconds]
    pure: dict[tuple[Any, ...], Seconds]


def replay(
    kinds: dict[tuple[Any, ...], PassKind],
    method: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    config: ExplainerConfig,
    repeats: int,
    sync: Sync,
) -> Replay:
    call, pure = {}, {}
    for key, kind in kinds.items():
        times = min(repeats, sum(kind.counts.values()))
        if kind.kind == "forward":
            call[key] = pure[key] = median(time_forward(kind, times, sync))
        else:
            call[key] = median(time_explanation_call(kind, method, times, sync))
            pure[key] = median(time_explanation_pass(kind, config, times, sync))
    return Replay(call, pure)


def total(kinds: dict[tuple[Any, ...], PassKind], seconds: dict[tuple[Any, ...], Seconds], phase: str = "") -> Seconds:
    """Count times median over the kinds of pass, of one phase or of all."""
    result = Seconds()
    for key, kind in kinds.items():
        count = kind.counts.get(phase, 0) if phase else sum(kind.counts.values())
        result = result + seconds[key] * count
    return result


# -- one case ----------------------------------------------------------------------------------
def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def breakdown(
    bench: Workbench, recorder: Recorder, call: dict[tuple[Any, ...], Seconds], pure: dict[tuple[Any, ...], Seconds]
) -> list[dict[str, Any]]:
    """Per phase: passes (calls, images, seconds alone) and the recording trial's seconds there."""
    rows = []
    for phase in (SCORED, *bench.suite.names, OUTSIDE):
        trial = recorder.phase_seconds.get(phase, Seconds())
        row: dict[str, Any] = {"phase": phase, "trial_s": trial.wall, "trial_cpu_s": trial.cpu}
        for kind_name in ("forward", "explanation"):
            chosen = {key: k for key, k in recorder.kinds.items() if k.kind == kind_name and phase in k.counts}
            row[f"{kind_name}_calls"] = sum(k.counts[phase] for k in chosen.values())
            row[f"{kind_name}_images"] = sum(k.counts[phase] * len(k.x) for k in chosen.values())
            alone, alone_pure = total(chosen, call, phase), total(chosen, pure, phase)
            row[f"{kind_name}_s"], row[f"{kind_name}_cpu_s"] = alone.wall, alone.cpu
            row[f"{kind_name}_pure_s"], row[f"{kind_name}_pure_cpu_s"] = alone_pure.wall, alone_pure.cpu
        rows.append(row)
    return rows


def measure(case: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from optuna.trial import FixedTrial

    sync = synchroniser(device)
    started = time.perf_counter()
    bench = prepare(case, args.images, Path(args.run_dir), device)
    log(f"[{case}] workbench ready in {time.perf_counter() - started:.1f} s")
    params, why = bench.space.seed_params(args.config)
    if params is None:
        raise SystemExit(f"--config {args.config}: not in the {case} search space ({why})")
    config = bench.space.sample(FixedTrial(params))
    run_trial = TrialRunner(bench, params, sync)
    first = run_trial()  # the worker's first trial: fills the per-batch caches
    log(f"[{case}] first trial (cold caches) {first.wall:.2f} s")

    recorder = Recorder(sync)
    with recording(bench, recorder):
        recorded = run_trial()
    suite_seconds = recorder.phase_seconds.pop("suite")
    metrics_seconds = sum(recorder.phase_seconds.values(), Seconds())
    recorder.add_time(SCORED, suite_seconds - metrics_seconds)
    recorder.add_time(OUTSIDE, recorded - suite_seconds)
    kinds = recorder.kinds
    log(f"[{case}] recording trial {recorded.wall:.2f} s, {len(kinds)} kinds of pass")
    method = bench.explainer(config).method

    trials: list[Seconds] = []
    calls: list[Seconds] = []
    pures: list[Seconds] = []
    replays: list[Replay] = []
    for round_index in range(args.rounds):
        trials.append(run_trial())
        replays.append(replay(kinds, method, config, args.repeats, sync))
        calls.append(total(kinds, replays[-1].call))
        pures.append(total(kinds, replays[-1].pure))
        trial, call, pure = trials[-1], calls[-1], pures[-1]
        log(
            f"[{case}] round {round_index + 1}: trial {trial.wall:.2f} s (cpu {trial.cpu:.2f}), passes alone "
            f"{call.wall:.2f} s (cpu {call.cpu:.2f}; pure {pure.wall:.2f}), ratio {trial.wall / call.wall:.3f} "
            f"(cpu {trial.cpu / call.cpu:.3f}; pure {trial.wall / pure.wall:.3f})"
        )

    median_call = {key: median([r.call[key] for r in replays]) for key in kinds}
    median_pure = {key: median([r.pure[key] for r in replays]) for key in kinds}
    ratios = {
        f"ratio{suffix}": spread([t.of(clock) / c.of(clock) for t, c in zip(trials, against, strict=True)])
        for suffix, clock, against in (
            ("", "wall", calls),
            ("_cpu", "cpu", calls),
            ("_pure", "wall", pures),
            ("_pure_cpu", "cpu", pures),
        )
    }
    return {
        "case": case,
        "model": bench.spec.model.name,
        "image_size": bench.spec.model.input_shape[-1],
        "images": sum(len(b.x) for b in bench.batches),
        "batches": len(bench.batches),
        "metrics": bench.suite.names,
        "config": args.config,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "first_trial_s": first.wall,
        "recording_trial_s": recorded.wall,
        "trial_s": [t.wall for t in trials],
        "trial_cpu_s": [t.cpu for t in trials],
        "passes_alone_s": [c.wall for c in calls],
        "passes_alone_cpu_s": [c.cpu for c in calls],
        "passes_alone_pure_s": [p.wall for p in pures],
        "passes_alone_pure_cpu_s": [p.cpu for p in pures],
        **ratios,
        "passes": [
            {
                "pass": k.label,
                "calls": sum(k.counts.values()),
                "by_phase": k.counts,
                "median_s": median_call[key].wall,
                "median_cpu_s": median_call[key].cpu,
                "pure_median_s": median_pure[key].wall,
                "pure_median_cpu_s": median_pure[key].cpu,
            }
            for key, k in kinds.items()
        ],
        "breakdown": breakdown(bench, recorder, median_call, median_pure),
    }


def print_case(result: dict[str, Any], clock: str) -> None:
    suffix = "_cpu_s" if clock == "cpu" else "_s"
    print(
        f"\n## {result['case']}: {result['model']} at {result['image_size']} px, {result['images']} images in "
        f"{result['batches']} batches, config {result['config']}, {result['device']}, {result['threads']} threads, "
        f"torch {result['torch']}"
    )
    for label, key in (("wall", "ratio"), ("CPU", "ratio_cpu"), ("wall, pure", "ratio_pure")):
        r = result[key]
        print(f"ratio ({label}): {r['median']:.3f} (range {r['min']:.3f}-{r['max']:.3f})")
    med = {key: statistics.median(result[key]) for key in ("trial_s", "trial_cpu_s", "passes_alone_s")}
    med.update({key: statistics.median(result[key]) for key in ("passes_alone_cpu_s", "passes_alone_pure_s")})
    print(
        f"trial {med['trial_s']:.2f} s wall, {med['trial_cpu_s']:.2f} s CPU (median of {result['rounds']}; first "
        f"trial {result['first_trial_s']:.2f} s wall); passes alone {med['passes_alone_s']:.2f} s wall, "
        f"{med['passes_alone_cpu_s']:.2f} s CPU; pure {med['passes_alone_pure_s']:.2f} s wall\n"
    )
    print(f"| pass | calls | median {clock} s | pure median {clock} s |")
    print("|---|---|---|---|")
    for row in result["passes"]:
        median_key = "median_cpu_s" if clock == "cpu" else "median_s"
        print(f"| {row['pass']} | {row['calls']} | {row[median_key]:.4f} | {row['pure_' + median_key]:.4f} |")
    print(
        f"\n{clock} seconds; trial: the recording trial's time in each phase; overhead = trial - passes alone\n\n"
        "| phase | forwards (calls / images) | forwards s | explanations (calls / images) | explanations s "
        "(pure) | trial s | overhead s |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = result["breakdown"]
    sums = {key: sum(row[key] for row in rows) for key in rows[0] if key != "phase"}
    for row in [*rows, {"phase": "**total**", **sums}]:
        passes = row["forward" + suffix] + row["explanation" + suffix]
        print(
            f"| {row['phase']} | {row['forward_calls']} / {row['forward_images']} | {row['forward' + suffix]:.3f} | "
            f"{row['explanation_calls']} / {row['explanation_images']} | {row['explanation' + suffix]:.3f} "
            f"({row['explanation_pure' + suffix]:.3f}) | {row['trial' + suffix]:.3f} | "
            f"{row['trial' + suffix] - passes:+.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--images", type=int, default=2, help="images of the 224-px cases (mini: the demo's 128)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="replays of each kind of pass (median kept), at most as many as the trial's calls",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed trials, each followed by a replay")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--config", default="epsilon_gamma_box", help="the seed composite every trial explains with")
    parser.add_argument("--run-dir", default="runs/trial_cost", help="where models are trained or saved")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="the clock of the printed tables")
    parser.add_argument("--json", action="store_true", help="one JSON object per case, nothing else on stdout")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown or not cases:
        parser.error(f"--cases: unknown {unknown}; choose from {', '.join(CASES)}")
    if args.images < 1 or args.repeats < 1 or args.rounds < 1:
        parser.error("--images, --repeats and --rounds must be >= 1")

    from xaisearch.allocator import keep_freed_memory
    from xaisearch.devices import resolve_device

    keep_freed_memory()  # as every xaisearch worker process does at start
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    for case in cases:
        result = measure(case, args, device)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print_case(result, args.clock)
    if not args.json:
        flags = f"--cases {','.join(cases)} --images {args.images} --repeats {args.repeats} --rounds {args.rounds}"
        threads = f" --threads {args.threads}" if args.threads is not None else ""
        print(f"\ncommand: python bench/trial_cost.py {flags} --device {args.device}{threads} --config {args.config}")


if __name__ == "__main__":
    main()
