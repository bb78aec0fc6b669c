"""The bench's one timing method. Everything it times is an `Item` (a model call, frames through the daemon's loop,
calls paced at a camera's rate), and items are timed together in interleaved rounds in one process: every round
times each item once, in a new seeded order (A B C, C A B, B C A ...). A change of the machine's load during the
run (a background job, a CPU clock that drops) then hits every item alike, no item always follows the same
neighbour (whose leftovers, such as a spinning thread pool, it would inherit), and a ratio between two items is
the median of their per-round ratios, reported with its interquartile range. Dividing a median by a mean taken minutes apart in another run did not
reproduce (ratios of 0.6 to 11 for one pair of models).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

_log = logging.getLogger(__name__)


@dataclass
class Budget:
    seconds: float = 2.0      # each item's timed seconds in all, spread over the rounds
    rounds: int = 12          # interleaved rounds; every ratio is the median of this many per-round ratios
    warmup_runs: int = 2      # untimed calls first: onnxruntime's first calls allocate
    min_frames: int = 5       # frames the threaded pipeline run shows, at least
    paced_frames: int = 6     # calls per round at a camera's rate (the threads table)

    @property
    def block_s(self) -> float:
        return self.seconds / self.rounds


QUICK = Budget(seconds=0.12, rounds=3, warmup_runs=1, min_frames=4, paced_frames=3)


def budget_for(quick: bool, seconds: float | None = None, rounds: int | None = None) -> Budget:
    """The default or --quick budget, with --budget's seconds and --rounds if given."""
    base = QUICK if quick else Budget()
    changes = {k: v for k, v in (("seconds", seconds), ("rounds", rounds)) if v is not None}
    return dataclasses.replace(base, **changes)


@dataclass
class Block:
    """One item's share of one round."""
    units: int      # calls or frames
    wall_s: float
    cpu_s: float    # process CPU time (every thread) over the same span
    work_cpu_s: float | None = None  # the measured work's own CPU where other threads run beside it; None: cpu_s


class Item:
    """Something timed in rounds: `block` runs it for about `budget.block_s` (at least one unit)."""
    name = ""
    settle_after = 0.0  # after its block, wait up to this long for its threads to go idle (spinning)

    def warm(self, budget: Budget) -> None:
        pass

    def block(self, budget: Budget) -> Block:
        raise NotImplementedError


@dataclass
class Series:
    """An item's blocks, one per round, and its single calls where it times them one by one."""
    name: str
    blocks: list[Block] = field(default_factory=list)
    unit_s: list[float] = field(default_factory=list)
    error: Exception | None = None

    @property
    def round_ms(self) -> np.ndarray:
        return np.array([1e3 * b.wall_s / b.units for b in self.blocks])

    @property
    def round_cpu_pct(self) -> np.ndarray:
        return np.array([100 * b.cpu_s / b.wall_s if b.wall_s > 0 else 0.0 for b in self.blocks])

    @property
    def round_cpu_ms(self) -> np.ndarray:
        """CPU milliseconds per unit, each round: the work's own (`work_cpu_s`) where a block gives it."""
        return np.array([1e3 * (b.cpu_s if b.work_cpu_s is None else b.work_cpu_s) / b.units for b in self.blocks])

    @property
    def units(self) -> int:
        return sum(b.units for b in self.blocks)

    def latency(self) -> dict:
        """Median and 90th percentile of single calls (of the rounds' means where calls are not timed singly),
        each round's mean, and the process's CPU use while it ran (100% = one core)."""
        single = np.array(self.unit_s) * 1e3 if self.unit_s else self.round_ms
        rounds = self.round_ms
        return {"median_ms": round(float(np.median(single)), 3), "p90_ms": round(float(np.percentile(single, 90)), 3),
                "mean_ms": round(float(single.mean()), 3), "runs": self.units, "rounds": len(rounds),
                "round_ms": [round(float(v), 3) for v in rounds],
                "cpu_pct": round(float(np.median(self.round_cpu_pct)), 1)}


def interleave(items: list[Item], budget: Budget) -> list[Series]:
    """Warm every item, then `budget.rounds` rounds of one block each: the given order first, then a seeded new
    order each round. An item that raises is dropped from the later rounds; its Series keeps the error."""
    series = [Series(it.name) for it in items]
    for it, s in zip(items, series):
        try:
            it.warm(budget)
        except Exception as e:  # a runtime's own exception: this item fails, the others go on
            s.error = e
    settle = 0.0
    orders = np.random.default_rng(0)
    for r in range(budget.rounds):
        for i in (range(len(items)) if r == 0 else orders.permutation(len(items))):
            if series[i].error is not None:
                continue
            if settle:
                quiesce(settle)
            try:
                block = items[i].block(budget)
            except Exception as e:
                _log.error("%s failed in round %d: %s", items[i].name, r + 1, e)
                series[i].error = e
                continue
            settle = items[i].settle_after
            series[i].blocks.append(block)
            series[i].unit_s += getattr(items[i], "last_unit_s", [])
    return series


def quiesce(limit_s: float, step_s: float = 0.01) -> None:
    """Wait, at most `limit_s`, until this process's other threads (a spinning thread pool) stop using the CPU.
    A fixed pause is not enough on a loaded machine: a pool spins for a number of iterations, not of seconds."""
    end = time.perf_counter() + limit_s
    while time.perf_counter() < end:
        c0 = time.process_time()
        time.sleep(step_s)
        if time.process_time() - c0 < 0.1 * step_s:
            return


@contextlib.contextmanager
def one_opencv_thread():
    """OpenCV on the calling thread only, as the model alone runs: a thread's CPU time then holds all the frame
    path's work (none of it in OpenCV's pool). Restored afterwards."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


class ThreadClock:
    """Wall time and this thread's CPU time (`time.thread_time`): another job on the machine stretches the first,
    not the second, and the second leaves out other threads' work (a camera's render, a face search)."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self._at = time.perf_counter(), time.thread_time()

    def lap(self) -> tuple[float, float]:
        """Seconds (wall, CPU) since the last lap or restart."""
        at = time.perf_counter(), time.thread_time()
        spent = at[0] - self._at[0], at[1] - self._at[1]
        self._at = at
        return spent


def model_call(predict, batch: np.ndarray) -> tuple[float, float]:
    """Seconds (wall, this thread's CPU) of one model call on a batch of one frame: the model alone, to pair with
    a frame path's time on a ThreadClock."""
    clock = ThreadClock()
    predict(batch)
    return clock.lap()


def paired(num: Series, den: Series, cpu: bool = False) -> dict | None:
    """num's time per unit over den's (wall time, or with `cpu` CPU time), round by round: the median and quartiles
    of those ratios. None when the two have no rounds in common (one failed)."""
    n = min(len(num.blocks), len(den.blocks))
    if n == 0:
        return None
    a, b = (num.round_cpu_ms, den.round_cpu_ms) if cpu else (num.round_ms, den.round_ms)
    ratios = a[:n] / np.maximum(b[:n], 1e-9)
    q25, med, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": round(float(med), 3), "q25": round(float(q25), 3), "q75": round(float(q75), 3), "rounds": n}


class CallItem(Item):
    """One frame through a model's predict, called back to back for the block."""

    def __init__(self, name: str, predict, frame: np.ndarray):
        self.name, self.predict = name, predict
        self.batch = np.ascontiguousarray(frame[None])
        self.last_unit_s: list[float] = []

    def warm(self, budget: Budget) -> None:
        for _ in range(budget.warmup_runs):
            self.predict(self.batch)

    def block(self, budget: Budget) -> Block:
        times = []
        c0 = time.process_time()
        start = t1 = time.perf_counter()
        while not times or t1 - start < budget.block_s:
            t0 = time.perf_counter()
            self.predict(self.batch)
            t1 = time.perf_counter()
            times.append(t1 - t0)
        self.last_unit_s = times
        return Block(len(times), t1 - start, time.process_time() - c0)


class PacedItem(Item):
    """Calls paced at `fps`, as the daemon gets frames from a camera: the CPU a setting costs at that frame rate
    (a spinning thread pool burns cores between calls) and whether it keeps up."""

    def __init__(self, name: str, predict, frame: np.ndarray, fps: float):
        self.name, self.predict, self.period = name, predict, 1.0 / fps
        self.batch = np.ascontiguousarray(frame[None])

    def block(self, budget: Budget) -> Block:
        c0 = time.process_time()
        start = due = time.perf_counter()
        for _ in range(budget.paced_frames):
            self.predict(self.batch)
            due += self.period
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        return Block(budget.paced_frames, time.perf_counter() - start, time.process_time() - c0)
