"""The model card is rendered from the files' metadata and leaves hand-written text alone."""
from __future__ import annotations

import shutil
from pathlib import Path

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


SMALL = Path(__file__).resolve().parents[2] / "models" / "hair-unet-226k-32.onnx"  # 32x32: quick to time


@pytest.fixture
def small_models(tmp_path) -> Path:
    if not SMALL.is_file():
        pytest.skip(f"{SMALL.name} not in models/")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SMALL, models / SMALL.name)
    return models


def test_a_card_out_that_is_not_markdown_is_refused_and_nothing_written(small_models, caplog):
    """`card DIR --out DIR/new.onnx` wrote markdown into a .onnx file (exit 0; the next `card DIR` then failed on
    it), --out notes.json appended the card to the JSON, and --out an existing model was a bare codec error."""
    from export.cli import main
    notes = small_models / "notes.json"
    notes.write_text('{"a": 1}\n')
    before = {p.name: p.read_bytes() for p in small_models.iterdir()}
    for out in (small_models / "new.onnx", notes, small_models / SMALL.name):
        caplog.clear()
        assert main(["card", str(small_models), "--no-bench", "--no-breakdown", "--out", str(out)]) == 2, out
        assert f"--out {out}: expected a .md file" in caplog.text
    assert {p.name: p.read_bytes() for p in small_models.iterdir()} == before
    assert main(["card", str(small_models), "--no-bench", "--no-breakdown"]) == 0


def test_a_card_out_that_is_binary_or_has_a_broken_block_is_named_before_the_timing(small_models, monkeypatch,
                                                                                     caplog):
    """A binary --out was "'utf-8' codec can't decode byte 0xd3" naming neither file nor option, a broken block
    was said as '--docs', and both only after the timing; a stray end line got a second block appended first."""
    import export.model_card
    from export.cli import main

    def no_timing(*args, **kwargs):
        raise AssertionError("timed before --out was checked")
    monkeypatch.setattr(export.model_card, "side_by_side", no_timing)
    binary, broken, stray = (small_models / name for name in ("binary.md", "broken.md", "stray.md"))
    binary.write_bytes(b"\xd3\x00 not text")
    broken.write_text(f"{BLOCK.begin_line('a')}\n{BLOCK.begin_line('b')}\n{BLOCK.end}\n")
    stray.write_text(f"notes\n{BLOCK.end}\n")
    for out, words in ((binary, "not a text file"), (broken, "expected one block"), (stray, "expected one block")):
        before = out.read_bytes()
        caplog.clear()
        assert main(["card", str(small_models), "--runs", "1", "--no-breakdown", "--out", str(out)]) == 2, out
        assert f"--out {out}: {words}" in caplog.text
        assert out.read_bytes() == before
