"""Should the int8 file ship? Accuracy of both files on the benchmarks and their speed, measured in one run."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime

from .evaluation import BENCHMARKS, eval_metadata, evaluate_file
from .speed import cpu_name, side_by_side

_log = logging.getLogger(__name__)

MAX_IOU_DROP_POINTS = 1.0  # the shipping rule: int8 may lose at most 1 IoU point (per-image mean, Figaro Testing)
RULE_SET = "figaro-test"


@dataclass
class Int8Report:
    fp32: dict[str, dict]  # data set -> metrics
    int8: dict[str, dict]
    speed: dict[str, dict[str, float]] = field(default_factory=dict)  # "fp32"/"int8" -> median_ms, p90_ms
    cpu: str = ""

    @property
    def iou_drop_points(self) -> float:
        return 100.0 * (self.fp32[RULE_SET]["iou"] - self.int8[RULE_SET]["iou"])

    @property
    def speedup(self) -> float:
        return self.speed["fp32"]["median_ms"] / self.speed["int8"]["median_ms"]

    @property
    def ships(self) -> bool:
        return self.iou_drop_points <= MAX_IOU_DROP_POINTS

    def table(self) -> str:
        lines = [f"{'':<30}{'fp32':>10}{'int8':>10}{'change':>10}"]
        for spec in self.fp32:
            for key in ("iou", "f1", "pooled_iou", "pixel_accuracy"):
                a, b = self.fp32[spec][key], self.int8[spec][key]
                lines.append(f"{spec + ' ' + key:<30}{a:>10.4f}{b:>10.4f}{100 * (b - a):>+9.2f}p")
        a, b = self.speed["fp32"]["median_ms"], self.speed["int8"]["median_ms"]
        ratio = f"x{self.speedup:.2f}"
        lines.append(f"{'latency median (ms)':<30}{a:>10.1f}{b:>10.1f}{ratio:>10}")
        lines.append(f"speed: one image per run, {self.speed['int8']['runs']} interleaved runs each, "
                     f"onnxruntime {onnxruntime.__version__} on {self.cpu}")
        verdict = "SHIP" if self.ships else "DO NOT SHIP"
        lines.append(f"rule: {RULE_SET} IoU drop {self.iou_drop_points:.2f} points <= {MAX_IOU_DROP_POINTS:g} "
                     f"-> {verdict}")
        return "\n".join(lines)

    def metadata(self) -> dict[str, str]:
        """The int8 file's own eval.* figures plus what quantisation changed and the decision."""
        return {**eval_metadata(self.int8),
                **{f"quant.fp32_{k}": v for k, v in eval_metadata(self.fp32).items()},
                "quant.iou_drop_points": f"{self.iou_drop_points:.2f}",
                "quant.speedup": f"{self.speedup:.2f}",
                "quant.latency_ms": f"{self.speed['int8']['median_ms']:.1f}",
                "quant.fp32_latency_ms": f"{self.speed['fp32']['median_ms']:.1f}",
                "quant.bench_cpu": self.cpu,
                "quant.ships": "yes" if self.ships else "no"}


def check_rule_set(data_sets: tuple[str, ...] | list[str]) -> None:
    """The shipping rule's set must be among those measured: `export int8` asks before quantising."""
    if RULE_SET not in data_sets:
        raise ValueError(f"--data {' '.join(data_sets)}: the shipping rule is measured on {RULE_SET}; include it")


def compare(fp32: str | Path, int8: str | Path, data_sets: tuple[str, ...] = BENCHMARKS,
            data_root: Path | None = None, runs: int = 30, threads: int = 0, progress: bool = True,
            limit: int = 0) -> Int8Report:
    """Both files on the same benchmarks (`limit` > 0: first pairs only, for quick checks) and their speed."""
    check_rule_set(data_sets)
    loaded: dict = {}  # both files see the very same decoded photos
    report = Int8Report(evaluate_file(fp32, data_sets, data_root, threads, progress, limit, loaded),
                        evaluate_file(int8, data_sets, data_root, threads, progress, limit, loaded), cpu=cpu_name())
    speed = side_by_side([fp32, int8], runs=runs, threads=threads)
    report.speed = {"fp32": speed[str(fp32)], "int8": speed[str(int8)]}
    return report
