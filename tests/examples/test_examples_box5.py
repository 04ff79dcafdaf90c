"""The Box 5 discovery example runs end to end in its --quick setting and its scorer is sound."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "box5_discovery.py"


@pytest.fixture(scope="module")
def box5():
    pytest.importorskip("wordfreq", reason="the Box 5 example needs the wordfreq package")
    spec = importlib.util.spec_from_file_location("box5_discovery", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for font in (mod.FONT_LATIN, mod.FONT_CJK):
        if not Path(font).exists():
            pytest.skip(f"font {font} not installed (Debian fonts-dejavu-core / fonts-wqy-microhei)")
    return mod


def test_data_sets_follow_the_protocol(box5):
    tri = box5.latin_trigrams(5000)
    assert len(tri) > 3000 and all(len(t) == 3 for t in tri)
    no_ae = box5.latin_trigrams(5000, drop="ae")
    assert not any(set(t) & set("aeAE") for t in no_ae) and set(no_ae) < set(tri)
    han = box5.gb2312_characters()
    assert len(han) == 6763 and han[0] == "啊"  # GB2312 levels 1 (3,755) + 2 (3,008)


def test_glyph_scorer_reads_clean_text_and_detects_swaps(box5):
    t = box5.glyph_templates()
    word = box5.TARGET_WORD
    assert box5.read_letters(box5.render_latin(word), len(word), t) == word
    assert box5.read_letters(box5.render_latin("Witonegamot"), len(word), t) == "Witonegamot"


def test_quick_run_writes_figure_and_numbers(box5, tmp_path):
    res = box5.run(tmp_path, quick=True)
    data = json.loads((tmp_path / "box5_results.json").read_text())
    assert set(data["conditions"]) == {"latin", "no_ae", "chinese", "mix"}
    for r in data["conditions"].values():
        assert np.isfinite(r["psnr"]) and 0 <= r["glyph_error_rate"] <= 1 and len(r["read"]) == 11
        assert r["uncertainty_factor"] > 0 and len(r["per_letter"]["consistency"]) == 11
    assert data["config"]["degradation"] == box5.DEGRADATION
    from PIL import Image

    with Image.open(tmp_path / "box5_figure.png") as im:
        assert im.size[0] > 800 and im.size[1] > 300
    assert res["degraded"]["psnr"] < 20  # the degradation is strong
