"""The terminal's progress bar: steps to the last step, or, with ``train.max_minutes``, minutes to the budget.

A time-budgeted run stops when its training time is spent, long before the step count the epochs allow:
a bar of steps would show a few percent and an ETA of tens of minutes for a 3-minute run.  So with a
budget the bar counts training minutes (resumes included) to ``train.max_minutes``, and the step goes
into the text beside it.
"""
from __future__ import annotations

from tqdm import tqdm

#: A time-budgeted bar: minutes trained of the budget, then the step and the loss line.
MINUTES_FORMAT = "{l_bar}{bar}| {n:.2f}/{total:g} min [{elapsed}<{remaining}{postfix}]"


class ProgressBar:
    """Wraps tqdm; ``update(step, trained_seconds)`` after every step, ``rolled_back(step)`` after the guard
    restored an earlier state."""

    def __init__(self, total_steps: int, step: int, max_minutes: float, trained_seconds: float, disable: bool):
        self.minutes = float(max_minutes or 0)
        self.step = step
        if self.minutes:
            self.bar = tqdm(total=self.minutes, initial=min(trained_seconds / 60, self.minutes), unit="min",
                            bar_format=MINUTES_FORMAT, dynamic_ncols=True, disable=disable)
        else:
            self.bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, disable=disable)
        self.postfix = ""

    @property
    def total(self) -> float:
        return self.bar.total

    @property
    def unit(self) -> str:
        return "min" if self.minutes else "step"

    def update(self, step: int, trained_seconds: float) -> None:
        self.step = step
        if self.minutes:
            self.bar.update(max(0.0, min(trained_seconds / 60, self.minutes) - self.bar.n))
        else:
            self.bar.update(step - self.bar.n)

    def rolled_back(self, step: int) -> None:
        self.step = step
        if not self.minutes:  # training time spent stays spent
            self.bar.n = step

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text
        self.bar.set_postfix_str(f"step {self.step}, {text}" if self.minutes else text)

    def close(self) -> None:
        self.bar.close()
