"""The model card is rendered from the files' metadata and leaves hand-written text alone."""
from __future__ import annotations

import shutil

import pytest

from device.model_file import load_model
from export.model_card import BLOCK, write_card
from export.quantize import quantize_file


def test_card_lists_each_file_from_its_metadata(exported, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(exported[0], models / "hair-test.onnx")
    quantize_file(models / "hair-test.onnx", models / "hair-test.int8.onnx", calib=4)
    card = write_card(models, runs=2)
    text = card.read_text()
    meta = load_model(models / "hair-test.onnx").metadata
    for name in ("hair-test.onnx", "hair-test.int8.onnx"):
        assert f"`{name}`" in text
    assert f"{int(meta['params']):,}" in text and meta["train.command"] in text and meta["export.command"] in text
    assert "unet-226k int8" in text and "research use" in text and "latency ms" in text

    begin = text[text.index(BLOCK.begin):].split("\n", 1)[0]
    assert begin == BLOCK.begin_line("python -m export card models")  # the marker names the command
    body = text[text.index(BLOCK.begin):]
    card.write_text("# My notes\nkept above\n\n" + body.replace(begin, begin + "\nstale row") + "\nkept below\n")
    write_card(models, bench=False, command="python -m export card MODELS --no-bench")
    again = card.read_text()
    assert again.startswith("# My notes\nkept above") and again.rstrip().endswith("kept below")
    assert "stale row" not in again and again.count(BLOCK.begin) == again.count(BLOCK.end) == 1
    assert BLOCK.begin_line("python -m export card MODELS --no-bench") in again
    assert "not measured" in again


def test_each_benchmark_cell_shows_the_figures_its_header_names(tmp_path):
    """The files table's Figaro and FASSEG cells list the file's own eval.* figures in the order the header
    names them (IoU / F1 / ...), each set's under its own header."""
    from device.config import DEFAULT_MODEL
    from export.model_card import render
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"{DEFAULT_MODEL} absent")
    meta = load_model(DEFAULT_MODEL).metadata
    table = [line for line in render([DEFAULT_MODEL], None, "cpu").splitlines() if line.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    row = [c.strip() for c in table[2].strip("|").split("|")]
    names = {"IoU": "iou", "F1": "f1", "pooled IoU": "pooled_iou", "pixel acc": "pixel_accuracy"}
    checked = 0
    for title, prefix in (("Figaro Testing ", "eval.figaro_test"), ("FASSEG V2 Test ", "eval.fasseg_v2_test")):
        (col,) = [i for i, h in enumerate(head) if h.startswith(title)]
        keys = [names[n] for n in head[col].removeprefix(title).split(" / ")]
        assert row[col].split(" / ") == [f"{float(meta[f'{prefix}.{k}']):.3f}" for k in keys]
        checked += len(keys)
    assert checked == 6


def test_a_hand_written_card_without_markers_keeps_its_text(exported, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(exported[0], models / "hair-test.onnx")
    (models / "README.md").write_text("# Notes by hand\n\nkept\n")
    text = write_card(models, bench=False, breakdown=False).read_text()
    assert text.startswith("# Notes by hand\n\nkept\n") and "`hair-test.onnx`" in text
    assert text.count(BLOCK.begin) == 1
