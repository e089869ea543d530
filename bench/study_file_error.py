"""How long a plain mistake in a study file takes to be reported, from the shell.

Runs ``xaisearch run`` on mutated copies of studies/demo.yaml (a misspelt key, a boolean for a
number, an unknown rule, a duplicate key) ``--repeat`` times each, in fresh processes, and prints
the median wall time next to that of ``python -c "import torch"`` (what every error cost when the
CLI imported torch before reading the file).

    python bench/study_file_error.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "studies" / "demo.yaml"
MISTAKES = {
    "misspelt key (n_trial)": lambda text: text.replace("n_trials:", "n_trial:", 1),
    "boolean for a number": lambda text: text.replace("n_trials: 40", "n_trials: true", 1),
    "unknown rule": lambda text: text.replace("rules: [", "rules: [lrp_zero, ", 1),
    "duplicate key": lambda text: text + "\nseed: 3\nseed: 4\n",
}


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "xaisearch.cli", "run"]
    text = DEMO.read_text()
    print("| mistake | exit | message | median wall s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for label, mutate in MISTAKES.items():
            study = Path(folder) / "study.yaml"
            study.write_text(mutate(text))
            command = [*cli, str(study), "--out", str(Path(folder) / "out")]
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
            message = done.stderr.strip().split(": ", 2)[-1]
            times = [wall(command) for _ in range(args.repeat)]
            print(f"| {label} | 2 | {message} | {statistics.median(times):.2f} |")
    torch = statistics.median(wall([sys.executable, "-c", "import torch"]) for _ in range(args.repeat))
    print(f"\n`python -c 'import torch'` alone: {torch:.2f} s (median of {args.repeat})")


if __name__ == "__main__":
    main()
