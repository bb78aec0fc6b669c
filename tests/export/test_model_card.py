"""The model card is rendered from the files' metadata and leaves hand-written text alone."""
from __future__ import annotations

import shutil

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
