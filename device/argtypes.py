"""argparse types shared by the device's commands: a bad number is a usage error (exit 2) naming the option, never
a traceback deep inside or a run of nothing that exits 0."""
from __future__ import annotations

import argparse
import math


def int_in(lo: int, hi: int | None = None):
    """An argparse type: a whole number of at least `lo` (and at most `hi`, when given)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"expected {lo} or more, got {n}" if hi is None
                                             else f"expected {lo}..{hi}, got {n}")
        return n
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero (`nan` and `inf` parse as floats, and mean nothing here)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
    return value


def positive_float_at_most(hi: float):
    """An argparse type: a finite number above zero and at most `hi`."""
    def parse(text: str) -> float:
        value = positive_float(text)
        if value > hi:
            raise argparse.ArgumentTypeError(f"expected a number above 0 and at most {hi:g}, got {text}")
        return value
    return parse


def float_in(lo: float, hi: float):
    """An argparse type: a finite number from `lo` to `hi`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"expected {lo:g}..{hi:g}, got {text}")
        return value
    return parse


def parse_hw(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"{text}: width and height must lie in 16..4096")
    return h, w
