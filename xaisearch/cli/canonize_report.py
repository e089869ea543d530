"""The text form of a canonizer's verification report, as ``xaisearch canonize`` prints it."""

from __future__ import annotations

from xaisearch.canonize.verify import VerificationReport


def report_text(report: VerificationReport, model: str) -> str:
    """The human-readable report: every step, BN coverage, output difference, timing, checks."""
    lines = [f"{model}: canonizer {report.canonizer!r}, {len(report.steps)} steps"]
    lines += [f"  {step}" for step in report.steps]
    lines.append(f"BatchNorm: {report.bn_total} total, {report.bn_folded} folded, {len(report.unfolded)} unfolded")
    lines += [f"  unfolded {name}: {why}" for name, why in report.unfolded.items()]
    lines += [f"  note: {note}" for note in report.notes]
    lines.append(
        f"output difference ({report.dtype}): max abs {report.max_abs_diff:.3g}, max rel {report.max_rel_diff:.3g}"
    )
    lines.append(f"restored exactly: {'yes' if report.restored_exactly else 'NO'}")
    lines += [f"  {problem}" for problem in report.restore_problems[:10]]
    lines.append(f"apply {report.apply_seconds:.3f} s, remove {report.remove_seconds:.3f} s")
    if report.conservation_error is not None:
        ratios = ", ".join(f"{r:.6f}" for r in report.conservation_ratios)
        lines.append(
            f"relevance conservation (bias-free, {report.dtype}): {ratios} (max error {report.conservation_error:.2g})"
        )
        lines.append(f"batch = per-sample attribution: max rel diff {report.batch_rel_diff:.2g}")
        state = report.attribution_problems[:3] if report.attribution_problems else "intact"
        lines.append(f"state after attribution: {state}")
    if report.atomicity_problems is not None:
        lines.append(f"failure atomicity: {'ok' if not report.atomicity_problems else report.atomicity_problems[:3]}")
    return "\n".join(lines)
