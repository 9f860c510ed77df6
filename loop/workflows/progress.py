"""Progress reporting for long workflows: `start(description, total) -> advance(n)`.

The CLI passes rich progress bars (`loop.cli.output.progress_bars`); library callers pass nothing.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int], Callable[[int], None]]


def no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None
