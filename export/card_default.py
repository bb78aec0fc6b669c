"""The model card's section on the default model (the file `device.config.DEFAULT_MODEL` names): issue 19's
targets against what the file measures, why each target missed is missed (export.shortfall), per-class figures,
the worst cases and the training cost.

Driven by the file: whichever file has the default name when the card is written is described.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .breakdown import (
    ABOVE_MARGIN,
    CELEB,
    EDGE_PX,
    FAR_PX,
    FIGARO,
    TAGS_FILE,
    UNTAGGED,
    SetBreakdown,
    check_gallery_place,
    gallery,
    gallery_name,
    measure,
    table,
    worst_list,
)
from .evaluation import TWIN_KEY, heldout_file, load_named, metadata_prefix
from .shortfall import celeb_lines, figure, gap_lines, hat_lines, points

_log = logging.getLogger(__name__)

FASSEG = "fasseg-v2-test"
# (data set, what it is, mean-IoU pass mark), as the issues set them.
TARGETS = (
    (CELEB, "celeb1k validation split (148 photos, ids divisible by 5): the mirror's own view", 0.88),
    (FIGARO, "Figaro-1k Testing (210 photos)", 0.85),
    (FASSEG, "FASSEG V2 Test (50 photos)", 0.92),
)
# The hat target has no number in the issue; the card's own rule compares hat photos with untagged ones.
HAT_PRECISION_SLACK, HAT_ABOVE_SLACK = 0.05, 0.02
# Views with no hair in them (each photo's largest hair-free square, training.data.SceneryPair): the mirror facing a
# wall or an empty room. No number in the issues either; the card's rule: at most 1% of their pixels dyed, judged
# on the mirror's own view (celeb1k-val's squares), Figaro Testing's squares shown beside it.
SCENERY = ("celeb1k-val-scenery", "figaro-test-scenery")
SCENERY_DYED_AT_MOST = 0.01


def default_name() -> str:
    from device.config import DEFAULT_MODEL
    return Path(DEFAULT_MODEL).name


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _measured(meta: dict[str, str], spec: str, now: SetBreakdown | None) -> tuple[float | None, str]:
    """The figure to judge a target by: the file's own eval.* metadata, else what was measured now."""
    prefix = metadata_prefix(spec)
    key = f"{prefix}.iou"
    fresh = now.overall["iou"] if now is not None else None
    where = f"now, {now.subset}" if now is not None and now.every > 1 else "now"
    if key in meta:
        value = float(meta[key])
        note = f"`{key}`"
        if f"{prefix}.measured_on" in meta:
            note += f" (its held-out twin's: `{meta[f'{prefix}.measured_on']}`)"
        elif f"{prefix}.seen" in meta:
            note += " (photos it trained on: not a held-out figure)"
        if fresh is not None and abs(fresh - value) > 0.001:
            note += f" (measured {where}: {fresh:.3f})"
        return value, note
    if fresh is not None:
        return fresh, f"measured {where} (not in the file's metadata)"
    return None, "not measured (not in the file's metadata; `python -m export eval FILE --write`)"


def hats_met(celeb: SetBreakdown | None) -> bool | None:
    """The card's hat rule on celeb1k-val's hat photos against its untagged ones; None when not measured."""
    if celeb is None or "hat" not in celeb.rows or UNTAGGED not in celeb.rows:
        return None
    hat, plain = celeb.rows["hat"], celeb.rows[UNTAGGED]
    return (hat["pooled_precision"] >= plain["pooled_precision"] - HAT_PRECISION_SLACK
            and hat["above_fraction"] <= plain["above_fraction"] + HAT_ABOVE_SLACK)


def scenery_figures(path: Path, data_root: Path | None = None, threads: int = 0,
                    every: int = 1) -> dict[str, tuple[float, int]]:
    """{set: (the share of its pixels the file dyes, crops)} on the views with no hair (SCENERY): with no hair
    in the truth, every pixel not counted correct is dyed. A refit's crops of photos it trained on: its twin's."""
    from training.evaluate import evaluate

    from .evaluation import onnx_predictor
    out = {}
    for spec in SCENERY:
        predict, size, threshold = onnx_predictor(heldout_file(path, spec, data_root), threads)
        arrays, _, _ = load_named(spec, data_root, 0, every)
        m = evaluate(predict, arrays, size, threshold, progress=False)
        out[spec] = (1.0 - m["pixel_accuracy"], m["images"])
    return out


def scenery_row(scenery: dict[str, tuple[float, int]] | None) -> str:
    what = "views with no hair stay undyed"
    if scenery is None:
        return f"| {what} | no number set | n/a | not measured (`--no-breakdown`) | ? |"
    (mirror, crops), (wild, wild_crops) = scenery[SCENERY[0]], scenery[SCENERY[1]]
    return (f"| {what} (each celeb1k-val photo's largest hair-free square, {crops} crops; training.data's "
            f"`celeb1k-val-scenery`) | no number set; card rule: at most {100 * SCENERY_DYED_AT_MOST:.0f}% of their "
            f"pixels dyed | {100 * mirror:.1f}% dyed (Figaro Testing's squares, {wild_crops} crops: "
            f"{100 * wild:.1f}%) | measured now | {'yes' if mirror <= SCENERY_DYED_AT_MOST else 'no'} |")


def targets_table(meta: dict[str, str], breakdowns: dict[str, SetBreakdown],
                  scenery: dict[str, tuple[float, int]] | None = None) -> list[str]:
    out = ["| target | pass mark | measured | from | met |", "|---|---|---|---|---|"]
    for spec, what, bar in TARGETS:
        value, note = _measured(meta, spec, breakdowns.get(spec))
        shown = "n/a" if value is None else figure(value, bar)
        met = "?" if value is None else ("yes" if value >= bar else f"no ({points(value - bar)} points)")
        out.append(f"| {what}, mean IoU | >= {bar:.2f} | {shown} | {note} | {met} |")
    celeb = breakdowns.get(CELEB)
    ok = hats_met(celeb)
    if ok is not None:
        hat, plain = celeb.rows["hat"], celeb.rows[UNTAGGED]
        out.append(f"| hats and caps stay non-hair (celeb1k-val, {hat['images']} hat photos) | no number set; "
                   f"card rule: precision within {HAT_PRECISION_SLACK:.2f} and hair above the labelled hair within "
                   f"{100 * HAT_ABOVE_SLACK:.0f} points of the untagged photos | precision "
                   f"{hat['pooled_precision']:.3f} (untagged {plain['pooled_precision']:.3f}); hair above "
                   f"{100 * hat['above_fraction']:.1f}% (untagged {100 * plain['above_fraction']:.1f}%) "
                   f"| measured now | {'yes' if ok else 'no'} |")
    else:
        out.append("| hats and caps stay non-hair | no number set | n/a | not measured (`--no-breakdown`) | ? |")
    out.append(scenery_row(scenery))
    return out


def flip_figure(path: Path, arrays: list, threads: int = 0) -> float:
    """Mean IoU of the file on loaded photos (`arrays`, as `load_named` gives them) with each photo's probabilities
    averaged with its mirror image's."""
    from device.model_file import flip_averaged
    from training.evaluate import evaluate

    from .evaluation import onnx_predictor
    predict, size, threshold = onnx_predictor(path, threads)
    return evaluate(flip_averaged(predict), arrays, size, threshold, progress=False)["iou"]


def photo_path_figure(path: Path, arrays: list, threads: int = 0) -> tuple[float, str]:
    """(mean IoU on celeb1k-val's loaded `arrays`, the keep rule) of the daemon's own photo path with its default
    settings: the page's try-a-photo (flip averaging as `[segmenter] photo_flip`, the head's own view as
    `photo_head`, then post-processing with the default `keep`)."""
    from device.config import PostprocessConfig

    from .postprocess_eval import measure
    keep = PostprocessConfig().keep
    result = measure(path, [keep], (CELEB,), threads=max(1, threads), labels="", loaded={CELEB: arrays})
    return result["splits"][CELEB][keep]["iou"], keep


def error_makeup(celeb: SetBreakdown, flipped: float | None, photo_path: tuple[float, str] | None = None) -> list[str]:
    """What the celeb1k-val target lacks, measured: the wrong pixels by distance to the true hair edge, the hat
    photos' part of them, the best the file reaches with flip averaging, and what the daemon's photo path gives."""
    on, near, far = celeb.error_shares()
    hats = [im for im in celeb.images if "hat" in im.tags]
    hat_far = sum(im.errors[2] for im in hats) / len(celeb.images) if celeb.images else float("nan")
    out = [f"Mean IoU is {celeb.overall['iou']:.3f}; the rest, {100 * (on + near + far):.1f} points, is the photos' "
           "wrong pixels (false and missed hair) as a share of each photo's union of predicted and true hair, "
           "averaged, by their distance to the true hair edge:", "",
           "| where | points of mean IoU |", "|---|---|",
           f"| on the edge (under {EDGE_PX} px: labels and the mask's resolution) | {100 * on:.1f} |",
           f"| near it ({EDGE_PX}-{FAR_PX} px) | {100 * near:.1f} |",
           f"| far from it ({FAR_PX} px and more: regions taken for the wrong thing) | {100 * far:.1f} |",
           f"| of which on the {len(hats)} hat photos | {100 * hat_far:.1f} |", ""]
    if flipped is not None:
        out.append(f"Averaged with its mirror image (two inferences a frame: twice the latency, over the 1.2x budget) "
                   f"the same file scores {flipped:.3f} on celeb1k-val. The page's try-a-photo does this "
                   "(`[segmenter] photo_flip`); live frames do not. The experiment logs below say what each step "
                   "bought.")
    if photo_path is not None:
        iou, keep = photo_path
        out += ["", f"Through the daemon's whole photo path (both mirror views averaged, the head's own view "
                    f"blended in where the photo is not already framed as the training photos, then post-processing "
                    f"with `keep = {keep}`, the default) a photo scores {iou:.3f} on celeb1k-val (`python -m export "
                    "postprocess`)."]
    return out


def shortfall(meta: dict[str, str], breakdowns: dict[str, SetBreakdown],
              ceiling: tuple[float, tuple[int, int]] | None) -> list[str]:
    """Why each target the file misses is missed, measured (export.shortfall); empty when it misses none."""
    out = []
    celeb = breakdowns.get(CELEB)
    for spec, what, bar in TARGETS:
        found = breakdowns.get(spec)
        value, _ = _measured(meta, spec, found)
        if value is None or value >= bar or found is None:
            continue
        title = what.split(" (")[0]
        if spec == CELEB and ceiling is not None:
            out += celeb_lines(title, found, value, bar, *ceiling, worst=len(found.worst) or 8) + [""]
        else:
            out += gap_lines(title, found, value, bar) + [""]
    if hats_met(celeb) is False:
        out += hat_lines(celeb) + [""]
    return out[:-1]


def celeb_ceiling(path: Path, arrays: list) -> tuple[float, tuple[int, int]]:
    """(the resolution ceiling of celeb1k-val's loaded `arrays` on the grid the file predicts on, that grid): its
    map before the graph stretches it, or its input size when it predicts at that size."""
    from device.model_file import load_model

    from .shortfall import output_grid, resolution_ceiling
    grid = output_grid(path) or tuple(load_model(path).input_size)
    return resolution_ceiling([truth for _, truth in arrays], grid), grid


def training_cost(meta: dict[str, str]) -> list[str]:
    seconds, epochs = meta.get("train.seconds"), meta.get("train.epochs")
    if not seconds or not epochs:
        return ["- not recorded in the file (no `train.seconds` / `train.epochs` metadata)"]
    s, n = float(seconds), int(epochs)
    lines = [f"- {n} epochs up to the exported checkpoint, {_duration(s)} of epoch time ({s:,.0f} s, "
             f"{_duration(s / max(n, 1))} per epoch; validation excluded), from the file's `train.seconds` / "
             "`train.epochs`; on the training machine's CPU with the command's `--threads` (epochs run after "
             "it are not counted)"]
    command = meta.get("train.command", "")
    if command:
        lines.append(f"- command: `{command}`")
    words = command.split()
    if "--init" in words[:-1]:  # a fine-tune: what came before it is another run's cost
        lines.append(f"- started from the weights of `{words[words.index('--init') + 1]}`, whose own training is not "
                     "counted above: the Makefile's `default-model` says which target remakes it")
    lines.append(f"- trained on: {meta.get('trained_on', '?').replace(',', ', ')}; "
                 f"inference: {int(meta['macs']) / 1e9:.2f} GMAC per frame (latency in the table above)")
    return lines


HAT_PROXY = f"""\
*Predicted hair above the labelled hair* is the hat proxy: the share of predicted hair pixels lying more
than {100 * ABOVE_MARGIN:.0f}% of the photo's height above the highest labelled hair pixel of their own column.
There are no hat masks here, but CelebAMask-HQ labels hats apart from hair, so on a hat photo those pixels
are almost all hat (or background just above it) painted as hair. It misses hat pixels beside the hair and
over columns with no visible hair, so it is a floor for the hat area dyed, not its size. On hatless photos the
same figure is the spill over the top edge of the hair: the baseline to compare with. Precision (pooled over
the photos) counts every false hair pixel, hat or not. Tags are by hand (`export/{TAGS_FILE.name}`:
hat = any headwear over the hair, incl. hoods and headbands); a photo may carry several tags, so the rows
overlap and only *untagged* + the tagged photos make up *all*. Rows of a handful of photos (see the photos
column) are anecdotes, not estimates."""


def section(path: Path, meta: dict[str, str], breakdowns: dict[str, SetBreakdown], figure: str | None,
            celeb_gallery: str | None, flipped: float | None = None,
            photo_path: tuple[float, str] | None = None,
            ceiling: tuple[float, tuple[int, int]] | None = None,
            scenery: dict[str, tuple[float, int]] | None = None) -> str:
    """Markdown of the default-model section (`figure`: the Figaro gallery's link relative to the card)."""
    out = [f"### The default model: `{path.name}`", "",
           "`device.config.DEFAULT_MODEL` loads this file. Targets are judged by the file's own `eval.*` "
           "figures where it has them; the rest below is measured on the file when the card was written "
           "(`python -m export card models`; `--no-breakdown` skips it). Mean IoU is the per-photo IoU of the "
           "hair mask averaged over the photos (the table's IoU)."]
    if meta.get(TWIN_KEY):
        out += ["", f"This file is a refit: once its recipe was chosen on celeb1k-val, it was trained again with "
                    f"celeb1k-val's photos as well (`--refit`; the command below). Its figures on those photos would "
                    f"flatter it, so every celeb1k-val figure on this card is its held-out twin's: "
                    f"`{meta[TWIN_KEY]}`, the same recipe without them (`train.heldout_twin`). The Figaro and FASSEG "
                    f"figures are this file's own."]
    out += ["", "#### Targets", ""]
    out += targets_table(meta, breakdowns, scenery)
    why = shortfall(meta, breakdowns, ceiling)
    if why:
        out += ["", "#### Why the targets are not met", ""] + why
    figaro, celeb = breakdowns.get(FIGARO), breakdowns.get(CELEB)
    if celeb is not None:
        out += ["", f"#### What celeb1k-val lacks ({celeb.subset}{celeb.overall['images']} photos)", ""]
        out += error_makeup(celeb, flipped, photo_path)
    if figaro is None and celeb is None:
        out += ["", "Per-class figures and the worst cases were not measured in this run (`--no-breakdown`)."]
    if figaro is not None:
        out += ["", f"#### Figaro-1k Testing by hairstyle class ({figaro.subset}{figaro.overall['images']} photos)", ""]
        out += table(figaro, "class")
    if celeb is not None:
        out += ["", f"#### celeb1k-val by hand tag ({celeb.subset}{celeb.overall['images']} photos)", ""]
        out += table(celeb, "tag")
    if figaro is not None or celeb is not None:
        out += ["", HAT_PROXY]
    out += ["", "#### Worst cases"]
    if figaro is not None and figure:
        out += ["", f"The {len(figaro.worst)} Figaro Testing photos with the lowest IoU, worst first "
                    "(photo, truth, prediction: white hair found, red false hair, blue hair missed):", "",
                f"![worst Figaro Testing photos of {path.name}]({figure})", ""]
        out += worst_list(figaro)
    if celeb is not None:
        out += ["", f"The {len(celeb.worst)} celeb1k-val photos with the lowest IoU, by id only: CelebAMask-HQ "
                    "may not be redistributed, so their gallery is not committed. The card run writes it to "
                    f"`{celeb_gallery}` (git-ignored); on its own: "
                    f"`python -m export breakdown models/{path.name} --out-dir out`.", ""]
        out += worst_list(celeb)
    if figaro is None and celeb is None:
        out += ["", "Not measured in this run (`--no-breakdown`)."]
    out += ["", "#### Training cost", ""]
    out += training_cost(meta)
    return "\n".join(out) + "\n"


def build(path: Path, meta: dict[str, str], card: Path, breakdown: bool = True, threads: int = 0, worst: int = 8,
          every: int = 1, gallery_dir: Path | None = None, progress: bool = True, data_root: Path | None = None) -> str:
    """Measure the default file (unless `breakdown` is off), write its galleries and render its section.

    The Figaro gallery goes to figures/ beside the file (committed); the celeb1k-val one to `gallery_dir`
    (default out/ beside the models folder, git-ignored), never into the models folder."""
    models_dir = path.parent
    breakdowns: dict[str, SetBreakdown] = {}
    figure = celeb_gallery = flipped = photo_path = ceiling = scenery = None
    if breakdown:
        gallery_dir = Path(gallery_dir) if gallery_dir else models_dir.resolve().parent / "out"
        celeb_path = gallery_dir / gallery_name(path.name, CELEB)
        check_gallery_place(CELEB, celeb_path, [models_dir, card.parent])
        celeb = load_named(CELEB, data_root, 0, every)  # decoded once: breakdown, flip, ceiling and photo path
        mirror_view = heldout_file(path, CELEB, data_root)  # a refit: its held-out twin
        breakdowns[FIGARO] = measure(path, FIGARO, data_root, threads, every, worst=worst, progress=progress)
        breakdowns[CELEB] = measure(mirror_view, CELEB, data_root, threads, every, worst=worst, progress=progress,
                                    loaded=celeb)
        breakdowns[FASSEG] = measure(path, FASSEG, data_root, threads, every, worst=0, progress=progress)
        ceiling = celeb_ceiling(mirror_view, celeb[0])
        fig_path = gallery(breakdowns[FIGARO], models_dir / "figures" / gallery_name(path.name, FIGARO))
        figure = os.path.relpath(fig_path, card.parent)
        gallery(breakdowns[CELEB], celeb_path)
        flipped = flip_figure(mirror_view, celeb[0], threads)
        photo_path = photo_path_figure(mirror_view, celeb[0], threads)
        scenery = scenery_figures(path, data_root, threads, every)
        celeb_gallery = (f"out/{celeb_path.name}" if gallery_dir.resolve() == models_dir.resolve().parent / "out"
                         else str(celeb_path))
    return section(path, meta, breakdowns, figure, celeb_gallery, flipped, photo_path, ceiling, scenery)
