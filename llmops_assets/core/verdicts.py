"""A gate's verdict: the measured value, its threshold, and whether it passed and blocks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    gate: str
    value: float | None  # None: nothing was measured (the gate is off)
    threshold: float
    passed: bool
    blocking: bool = True  # False: a failure is reported as a warning and stops nothing
    note: str = ""
    bound: float | None = None  # the confidence bound the gate compared with its threshold, when it used one

    @property
    def label(self) -> str:
        if self.value is None:
            return "OFF"
        return "PASS" if self.passed else ("FAIL" if self.blocking else "WARN")
