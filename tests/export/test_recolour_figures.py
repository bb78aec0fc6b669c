"""`python -m export recolour-gallery`: the recolour metrics table and gallery, on real Figaro Testing photos."""
from __future__ import annotations

import numpy as np
import pytest

from device.recolour.figaro import soft_alpha
from export import recolour_figures, recolour_quality
from export.cli import main


@pytest.fixture(scope="module")
def sets(data_root):
    """Two dark-ish and two light-ish photos (a handful, not all 210: the table's code, not its figures)."""
    from training.data import resolve
    pairs = [(p.name, *p.load()) for p in resolve("figaro-test", data_root)[:6]]
    return recolour_figures.dark_and_light(pairs, 2)


def test_table_and_gallery(sets):
    assert recolour_quality.soft_alpha is soft_alpha  # one definition, the device's
    dark, light = (recolour_quality.hair_lightness(rgb, m) for _, rgb, m in (sets["dark"][0], sets["light"][0]))
    assert dark <= light
    rows = recolour_figures.measure(sets, "crimson", "gold")
    assert [(r["set"], r["mode"]) for r in rows] == [(s, m) for s in ("dark", "light")
                                                      for m in ("input", "hsv", "natural", "ombre")]
    assert all(r["changed"] == 0 for r in rows)  # nothing outside the (dilated) hair changes
    assert all("roots" in r for r in rows if r["mode"] == "ombre")
    table = recolour_figures.markdown_table(rows, "crimson", "gold")
    assert table.count("\n| ") == 1 + len(rows)  # the header and a line per row
    image = recolour_figures.gallery(sets, "crimson", "gold", per_set=1, tile_height=40)
    assert image.dtype == np.uint8 and image.shape[0] > 2 * 40 and image.shape[2] == 3


def test_usage_errors_exit_2(tmp_path):
    out = ["--out", str(tmp_path / "g.png")]
    assert main(["recolour-gallery", "--count", "0", *out]) == 2
    assert main(["recolour-gallery", "--colour", "crimsn", *out]) == 2
    assert main(["recolour-gallery", "--data-root", str(tmp_path), *out]) == 2  # no figaro1k/ there
    assert not (tmp_path / "g.png").exists()
