"""The CLI keeps freed tensor memory in the process: measured as page faults, in fresh interpreters."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from xaisearch.allocator import ENVIRONMENT_SWITCH, keep_freed_memory, keep_freed_memory_unless_disabled

FAULTS_OF_REPEATED_PASSES = """
import resource, torch
from xaisearch.allocator import keep_freed_memory_unless_disabled
print(keep_freed_memory_unless_disabled())
def passes():
    for _ in range(10):  # 40 MiB activations: above glibc's largest dynamic mmap threshold
        torch.ones(10 * 2**20).sum()
passes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
passes()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_of_repeated_passes(switch: str) -> tuple[bool, int]:
    env = {**os.environ, ENVIRONMENT_SWITCH: switch}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_REPEATED_PASSES], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc; other C libraries keep theirs")
def test_freed_activations_are_reused_instead_of_faulted_in_again():
    tuned, faults_tuned = faults_of_repeated_passes("1")
    untuned, faults_untuned = faults_of_repeated_passes("0")
    assert tuned and not untuned
    pages = 10 * 40 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert faults_untuned > pages // 2  # every pass maps and faults its 40 MiB again
    assert faults_tuned < pages // 20


def test_the_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_SWITCH, "off")
    assert keep_freed_memory_unless_disabled() is False


def test_thresholds_outside_a_c_int_are_refused():
    with pytest.raises(ValueError, match="2 GiB"):
        keep_freed_memory(mmap_threshold=2**31)
