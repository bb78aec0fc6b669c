import shutil

import cv2
import numpy as np
import pytest

from training import data


def test_figaro_pairs_are_real_and_labelled_by_class(data_root):
    train = data.resolve("figaro-train", data_root)
    test = data.resolve("figaro-test", data_root)
    assert len(train) == 748 and len(test) == 210
    assert not {p.name.split("/")[-1] for p in train} & {p.name.split("/")[-1] for p in test}
    img, mask = train[0].load()
    assert img.dtype == np.uint8 and img.shape[2] == 3 and mask.shape == img.shape[:2]
    assert set(np.unique(mask)) == {0, 1}
    assert 0.05 < mask.mean() < 0.95
    assert {p.group for p in test} == set(data.FIGARO_CLASSES)


@pytest.mark.parametrize("split, name", [("fasseg-v2-train", "fasseg/V2/train/1"),
                                         # a bald head: the eyebrows are as large as the hair left at the sides
                                         ("fasseg-v2-test", "fasseg/V2/test/6")])
def test_fasseg_labels_snap_to_the_palette_and_drop_eyebrows(data_root, split, name):
    pair = next(p for p in data.resolve(split, data_root) if p.name == name)
    label = data.read_image(pair.mask)
    raw_hair = np.all(label == data.FASSEG_PALETTE["hair"], axis=-1)
    _, mask = pair.load()
    # eyebrows are hair-coloured components enclosed by skin: the mask has fewer components than the raw colour
    n_raw = cv2.connectedComponents(raw_hair.astype(np.uint8))[0]
    n_mask = cv2.connectedComponents(mask)[0]
    assert n_mask < n_raw
    # eyebrows sit just above the eyes: raw hair colour there, none in the mask
    eyes = np.all(label == data.FASSEG_PALETTE["eyes"], axis=-1).astype(np.uint8)
    n_eyes, _, stats, _ = cv2.connectedComponentsWithStats(eyes)
    checked = 0
    for x, y, w, h, area in stats[1:]:
        if area < 50:
            continue
        above = (slice(max(0, y - 5 * h // 2), y), slice(x + w // 5, x + 4 * w // 5))
        assert raw_hair[above].sum() > 20  # an eyebrow is there in the label
        assert mask[above].sum() == 0      # and not in the hair mask
        checked += 1
    assert checked == 2
    # anti-aliased pixels were snapped rather than dropped: the mask covers at least the exact-colour hair
    # that touches the background
    assert mask.sum() >= 0.9 * raw_hair.sum() - (n_raw - n_mask) * 3000


def test_fasseg_v3_reports_and_skips_the_four_mismatched_pairs(data_root, caplog):
    pairs = data.resolve("fasseg-v3-test", data_root)
    arrays, kept, skipped = data.load_pairs(pairs)
    assert len(skipped) == 4 and len(kept) == len(pairs) - 4
    assert all("differ in size" in s for s in skipped)
    assert "personne12250+0+60" in " ".join(skipped)


def test_corrupt_image_and_missing_file_give_clear_errors(tmp_path, data_root):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(data.DataError, match="not a readable image"):
        data.read_image(bad)
    with pytest.raises(data.DataError, match="no such file"):
        data.read_image(tmp_path / "absent.png")


def test_generic_folder_format_and_skips(tmp_path, data_root):
    src = data.resolve("figaro-test", data_root)[:3]
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for p in src:
        shutil.copy(p.image, tmp_path / "images" / p.image.name)
        img, mask = p.load()
        cv2.imwrite(str(tmp_path / "masks" / f"{p.image.stem}.png"), mask * 255)
    (tmp_path / "images" / "orphan.jpg").write_bytes(src[0].image.read_bytes())
    (tmp_path / "images" / "junk.jpg").write_bytes(b"garbage")
    (tmp_path / "masks" / "junk.png").write_bytes(b"garbage")
    pairs = data.resolve(f"folder:{tmp_path}")
    assert len(pairs) == 4  # orphan without a mask is skipped at listing
    arrays, kept, skipped = data.load_pairs(pairs)
    assert len(kept) == 3 and len(skipped) == 1 and "junk" in skipped[0]
    assert np.array_equal(arrays[0][1], src[0].load()[1])


def test_celebamask_layout_resizes_masks_to_the_image(tmp_path, data_root):
    img_dir, anno = tmp_path / "CelebA-HQ-img", tmp_path / "CelebAMask-HQ-mask-anno" / "0"
    img_dir.mkdir()
    anno.mkdir(parents=True)
    img, mask = data.resolve("figaro-test", data_root)[0].load()
    img = cv2.resize(img, (256, 256))
    mask = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(img_dir / "7.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(img_dir / "8.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(anno / "00007_hair.png"), mask * 255)
    pairs = data.resolve(f"celebamask:{tmp_path}")
    (im7, m7), (im8, m8) = [p.load() for p in pairs]
    assert m7.shape == im7.shape[:2] == (256, 256) and m7.mean() == pytest.approx(mask.mean(), abs=0.01)
    assert m8.sum() == 0  # no hair file: no hair


def test_split_is_deterministic_and_held_out_sets_are_refused(data_root):
    pairs = data.resolve("figaro-train", data_root)
    a, b = data.split_train_val(pairs), data.split_train_val(list(reversed(pairs)))
    assert {p.name for p in a[1]} == {p.name for p in b[1]}
    assert 0.05 < len(a[1]) / len(pairs) < 0.15
    pytest.importorskip("torch")
    from training.train import TrainConfig
    with pytest.raises(ValueError, match="held-out"):
        TrainConfig(data=["figaro-train", "figaro-test"])


def test_unknown_data_set_names_the_known_ones():
    with pytest.raises(data.DataError, match="figaro-train"):
        data.resolve("figaro-everything")


def test_celeb1k_has_a_fixed_validation_split_by_id_that_training_refuses(data_root):
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    train, val = data.resolve("celeb1k-train", data_root), data.resolve("celeb1k-val", data_root)
    assert len(train) + len(val) == 742 and len(val) >= 100
    ids = {p.name: int(p.name.rsplit("/", 1)[1]) for p in train + val}
    assert all(ids[p.name] % data.CELEB1K_VAL_EVERY == 0 for p in val)
    assert not any(ids[p.name] % data.CELEB1K_VAL_EVERY == 0 for p in train)
    img, mask = val[0].load()
    assert img.shape == (512, 512, 3) and set(np.unique(mask)) == {0, 1}
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data
    with pytest.raises(ValueError, match="validation split"):
        TrainConfig(data=["celeb1k-val"])
    # training on celeb1k-train validates on exactly celeb1k-val, never on a hash split of the training ids
    cfg = TrainConfig(data=["celeb1k-train"], data_root=str(data_root))
    _, train_pairs, _, val_pairs = load_training_data(cfg)
    assert {p.name for p in val_pairs} == {p.name for p in val}
    assert not {p.name for p in train_pairs} & {p.name for p in val_pairs}


def test_a_refit_trains_on_the_validation_photos_it_names_and_validates_on_the_rest(data_root):
    """`--refit`: celeb1k-val (or a half of it, ids divisible by 10 / the others) becomes training data, every photo
    of it on the training side; the run validates on what is left of celeb1k-val, never on a photo it trains on.
    Without --refit the halves are refused like celeb1k-val; the benchmarks are refused either way."""
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    val = data.resolve("celeb1k-val", data_root)
    half_a, half_b = data.resolve("celeb1k-val-a", data_root), data.resolve("celeb1k-val-b", data_root)
    assert set(half_a) | set(half_b) == set(val) and not set(half_a) & set(half_b)
    assert all(int(p.name.rsplit("/", 1)[1]) % 10 == 0 for p in half_a) and abs(len(half_a) - len(half_b)) <= 2
    for spec in ("celeb1k-val-a", "celeb1k-val-b"):
        with pytest.raises(ValueError, match="--refit"):
            data.refuse_for_training(["celeb1k-train", spec])
    with pytest.raises(ValueError, match="held-out"):
        data.refuse_for_training(["figaro-test"], refit=True)
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data
    with pytest.raises(ValueError, match="--refit"):
        TrainConfig(data=["celeb1k-train", "celeb1k-val-a"])
    cfg = TrainConfig(data=["celeb1k-train", "celeb1k-val-a"], repeat={"celeb1k-val-a": 2}, refit=True,
                      data_root=str(data_root))
    _, train_pairs, _, val_pairs = load_training_data(cfg)
    train = data.resolve("celeb1k-train", data_root)
    assert len(train_pairs) == len(train) + 2 * len(half_a), "all of the half, none held back by a hash split"
    assert set(val_pairs) == set(half_b)
    cfg = TrainConfig(data=["celeb1k-train", "celeb1k-val"], refit=True, data_root=str(data_root))
    _, train_pairs, _, val_pairs = load_training_data(cfg)
    assert set(train_pairs) == set(train) | set(val) and val_pairs == []


def test_celeb1k_tagged_subsets_weight_up_training_photos_and_validate_through_their_parent(data_root):
    """celeb1k-train-hat / -grey: the photos tagged by hand, all on the training side; named with their parent they
    repeat those photos, and the validation stays exactly celeb1k-val (no hash split of the subset)."""
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    import json
    train = data.resolve("celeb1k-train", data_root)
    tags = json.loads(data.CELEB1K_TRAIN_TAGS.read_text())["tags"]
    assert set(tags) == {p.name.rsplit("/", 1)[1] for p in train}, "every id of the training side, and only those"
    assert {t for v in tags.values() for t in v} == {"hat", "grey"}
    for tag in ("hat", "grey"):
        subset = data.resolve(f"celeb1k-train-{tag}", data_root)
        assert {p.name.rsplit("/", 1)[1] for p in subset} == {i for i, v in tags.items() if tag in v}
        assert set(subset) <= set(train) and len(subset) >= 10
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data
    with pytest.raises(ValueError, match="subset of celeb1k-train"):
        TrainConfig(data=["figaro-train", "celeb1k-train-hat"])
    hats = data.resolve("celeb1k-train-hat", data_root)
    cfg = TrainConfig(data=["celeb1k-train", "celeb1k-train-hat"], repeat={"celeb1k-train-hat": 3},
                      data_root=str(data_root))
    _, train_pairs, _, val_pairs = load_training_data(cfg)
    assert len(train_pairs) == len(train) + 3 * len(hats)
    assert sum(p == hats[0] for p in train_pairs) == 4, "once as celeb1k-train, three times as the subset"
    assert {p.name for p in val_pairs} == {p.name for p in data.resolve("celeb1k-val", data_root)}


def test_figaro_textured_hair_weights_up_only_the_training_sides_kinky_braids_and_dreadlocks(data_root):
    """figaro-train-textured: Figaro's kinky, braids and dreadlocks training photos; named beside figaro-train it
    repeats those of them on figaro-train's training side, never one that figaro-train validates on."""
    if not (data_root / "figaro1k").is_dir():
        pytest.skip("figaro1k not in ../shared/data")
    train = data.resolve("figaro-train", data_root)
    textured = data.resolve("figaro-train-textured", data_root)
    assert set(textured) < set(train) and {p.group for p in textured} == {"kinky", "braids", "dreadlocks"}
    assert len(textured) == sum(p.group in data.TEXTURED_CLASSES for p in train)
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data
    cfg = TrainConfig(data=["figaro-train", "figaro-train-textured"], repeat={"figaro-train-textured": 2},
                      data_root=str(data_root))
    _, train_pairs, _, val_pairs = load_training_data(cfg)
    fit, held = data.split_train_val(train)
    assert {p.name for p in val_pairs} == {p.name for p in held}
    extra = [p for p in train_pairs if p.group in data.TEXTURED_CLASSES]
    assert len(extra) == 3 * sum(p.group in data.TEXTURED_CLASSES for p in fit), "once as figaro-train, twice more"
    assert not {p.name for p in extra} & {p.name for p in held}


def test_a_share_under_one_keeps_that_share_of_a_data_set_the_same_for_a_seed(data_root):
    """`--repeat figaro-train-scenery=0.25`: a quarter of the crops, the same ones for the same seed, another
    quarter for another seed; whole numbers repeat the set as before."""
    if not (data_root / "figaro1k").is_dir():
        pytest.skip("figaro1k not in ../shared/data")
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data, repeated
    pairs = list(range(10))
    assert repeated(pairs, 2, 0) == pairs * 2
    assert repeated(pairs, 0.01, 0) != [], "a share keeps at least one pair"

    def training_side(share: float, seed: int = 0) -> list:
        cfg = TrainConfig(data=["figaro-train", "figaro-train-scenery"], repeat={"figaro-train-scenery": share},
                          data_root=str(data_root), seed=seed, limit=0)
        return [p for p in load_training_data(cfg)[1] if p.of]

    crops = training_side(1)
    quarter = training_side(0.25)
    assert 0.2 < len(quarter) / len(crops) < 0.3 and set(quarter) < set(crops)  # less the photos with no crop
    assert len(set(quarter)) == len(quarter), "a share repeats no crop"
    assert training_side(0.25) == quarter
    assert set(training_side(0.25, seed=1)) != set(quarter)


def test_figaro_hairstyle_classes_follow_the_frame_numbers(data_root):
    """150 frames per class in frame order (README of the data: 1-150 straight ... 901-1050 short-men), 120 of each
    in Training and 30 in Testing; 92 short-men training frames are missing here, so 28 of them remain."""
    from collections import Counter
    bounds = {1: "straight", 150: "straight", 151: "wavy", 300: "wavy", 301: "curly", 450: "curly", 451: "kinky",
              600: "kinky", 601: "braids", 750: "braids", 751: "dreadlocks", 900: "dreadlocks", 901: "short-men",
              1050: "short-men"}
    assert {frame: data.figaro_class(frame) for frame in bounds} == bounds
    train = Counter(p.group for p in data.resolve("figaro-train", data_root))
    test = Counter(p.group for p in data.resolve("figaro-test", data_root))
    assert train == {**{c: 120 for c in data.FIGARO_CLASSES[:-1]}, "short-men": 28}
    assert test == {c: 30 for c in data.FIGARO_CLASSES}


@pytest.mark.parametrize("name", ["fasseg/V2/test/1", "fasseg/V2/test/20", "fasseg/V2/test/37"])
def test_fasseg_hair_that_runs_off_the_photo_is_never_taken_for_an_eyebrow(data_root, name):
    """An eyebrow is enclosed by skin; hair that leaves the photo at its edge is hair, whatever it touches inside
    (V2 Test 20: a lock at the corner that touches no background label; 1 and 37: a few anti-aliased hair pixels
    at a side, and at the top or bottom edge). Every label pixel of the hair class (the nearest palette colour) on
    the border stays."""
    pair = next(p for p in data.resolve("fasseg-v2-test", data_root) if p.name == name)
    label = data.read_image(pair.mask)
    hair = data.snap_to_palette(label, data.FASSEG_PALETTE) == list(data.FASSEG_PALETTE).index("hair")
    _, mask = pair.load()
    border = np.zeros(mask.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    assert (hair & border).any(), "the label's hair reaches the edge of the photo"
    assert mask[hair & border].all()


def test_a_hash_split_set_validates_on_pairs_it_never_trains_on(data_root):
    """A set without a fixed validation split is split by name: each pair is on exactly one side."""
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data
    pairs = data.resolve("fasseg-v2-train", data_root)
    _, train_pairs, _, val_pairs = load_training_data(TrainConfig(data=["fasseg-v2-train"], val_fraction=0.3,
                                                                  data_root=str(data_root)))
    train_names, val_names = {p.name for p in train_pairs}, {p.name for p in val_pairs}
    assert val_names and train_names and not train_names & val_names
    assert train_names | val_names == {p.name for p in pairs}


def test_the_split_does_not_depend_on_where_the_data_lives(data_root, tmp_path):
    """A run resumed, or compared, with the data reached by another path validates on the same pairs."""
    (tmp_path / "elsewhere").symlink_to(data_root, target_is_directory=True)
    here = data.split_train_val(data.resolve("figaro-train", data_root))[1]
    there = data.split_train_val(data.resolve("figaro-train", tmp_path / "elsewhere"))[1]
    assert {p.name for p in here} == {p.name for p in there} and here


@pytest.mark.parametrize("spec, words", [("figaro-test", "held-out"), ("fasseg-v2-test", "held-out"),
                                         ("celeb1k-val", "validation split"), ("figaro-test-scenery", "held-out"),
                                         ("celeb1k-val-scenery", "validation split"),
                                         ("celeb1k-val-a", "validation split")])
def test_every_benchmark_and_validation_split_is_refused_as_training_data(spec, words):
    """Figaro Testing and FASSEG V2 Test are the public benchmarks, celeb1k-val the model selection split: none of
    them is trained on, alone or beside a training set."""
    with pytest.raises(ValueError, match=words):
        data.refuse_for_training(["figaro-train", spec])


def test_celebamask_masks_take_the_size_of_any_image(tmp_path, data_root):
    """The mask is stretched (nearest) to its image, whatever the image's shape: not square, and a size that is
    not a multiple of 8."""
    img_dir, anno = tmp_path / "CelebA-HQ-img", tmp_path / "CelebAMask-HQ-mask-anno" / "0"
    img_dir.mkdir()
    anno.mkdir(parents=True)
    img, mask = data.resolve("figaro-test", data_root)[0].load()
    img = cv2.resize(img, (203, 317))  # width 203, height 317
    small = np.zeros((100, 64), np.uint8)
    small[:50] = 1  # hair in the top half
    cv2.imwrite(str(img_dir / "3.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(anno / "00003_hair.png"), small * 255)
    (pair,) = data.resolve(f"celebamask:{tmp_path}")
    loaded, m = pair.load()
    assert loaded.shape[:2] == m.shape == (317, 203)
    assert m[:150].all() and not m[170:].any()


def brute_force_free_square(taken: np.ndarray) -> int:
    """The side of the largest square holding no taken pixel, by trying every square."""
    h, w = taken.shape
    best = 0
    for side in range(1, min(h, w) + 1):
        if any(not taken[y:y + side, x:x + side].any() for y in range(h - side + 1) for x in range(w - side + 1)):
            best = side
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_hair_free_square_is_free_of_hair_and_its_margin_and_as_large_as_an_odd_side_can_be(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((30, 40), np.uint8)
    for _ in range(rng.integers(1, 4)):  # a few blobs of hair
        y, x = rng.integers(0, 30), rng.integers(0, 40)
        mask[y:y + rng.integers(1, 6), x:x + rng.integers(1, 6)] = 1
    x, y, side = data.hair_free_square(mask, min_side=0, margin=0.05)
    gap = round(0.05 * 40)
    taken = cv2.dilate(mask, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)) > 0
    assert not taken[y:y + side, x:x + side].any() and y + side <= 30 and x + side <= 40
    best = brute_force_free_square(taken)
    assert side in (best, best - 1) and side % 2 == 1  # centred on a pixel: the largest odd side


def test_a_photo_with_no_hair_free_square_large_enough_gives_none():
    mask = np.zeros((100, 100), np.uint8)
    mask[::20, :] = 1  # hair every 20 rows: no square of 30 px anywhere
    assert data.hair_free_square(mask) is None
    assert data.hair_free_square(np.ones((50, 50), np.uint8)) is None
    assert data.hair_free_square(np.ones((50, 50), np.uint8), min_side=0) is None, "no free pixel: no square at all"


def test_scenery_crops_are_hair_free_squares_of_their_photos_and_stay_on_their_photos_side_of_a_split(data_root):
    """figaro-train-scenery / celeb1k-train-scenery: each photo's largest square with no labelled hair (a mask of
    zeros). A crop trains only where its photo does: never one of a photo the parent set validates on."""
    for spec, parent in (("figaro-train-scenery", "figaro-train"), ("celeb1k-train-scenery", "celeb1k-train")):
        if parent == "celeb1k-train" and not (data_root / "celeb1k-train").is_dir():
            continue
        photos = {p.name: p for p in data.resolve(parent, data_root)}
        crops = data.resolve(spec, data_root)
        assert len(crops) == len(photos) and {c.of for c in crops} == set(photos)
        loaded = 0
        for crop in crops[:60:6]:
            full, truth = photos[crop.of].load()
            box = data.hair_free_square(truth)
            if box is None:  # hair all over: no crop, and the loader says why (it is skipped as any unusable pair)
                with pytest.raises(data.DataError, match="free of hair"):
                    crop.load()
                continue
            img, mask = crop.load()
            x, y, side = box
            loaded += 1
            assert img.shape == (side, side, 3) and np.array_equal(img, full[y:y + side, x:x + side])
            assert not mask.any() and not truth[y:y + side, x:x + side].any()
            assert side >= data.SCENERY_MIN_SIDE * min(truth.shape)
        assert loaded >= 5
    crops = data.resolve("figaro-train-scenery", data_root)
    held = {p.name for p in data.split_train_val(data.resolve("figaro-train", data_root))[1]}
    train_side, val_side = data.split_train_val(crops)
    assert {c.of for c in val_side} == held and not {c.of for c in train_side} & held
    pytest.importorskip("torch")
    from training.train import TrainConfig, load_training_data
    cfg = TrainConfig(data=["figaro-train", "figaro-train-scenery"], data_root=str(data_root), limit=0)
    _, train_pairs, _, val_pairs = load_training_data(cfg)
    scenery = [p for p in train_pairs if p.of]
    assert scenery and not {p.of for p in scenery} & held, "a crop of a validation photo was trained on"
    assert {p.name for p in val_pairs} == held, "the crops add nothing to the validation"


def test_a_figaro_photo_without_a_frame_number_is_skipped_with_a_warning(tmp_path, data_root, caplog):
    """Frame-copy-org.jpg (a copy beside the originals) matched the listing's Frame*-org.jpg and was an
    AttributeError ('NoneType' object has no attribute 'group')."""
    real = data.resolve("figaro-test", data_root)[:2]
    for kind in ("Original", "GT"):
        (tmp_path / "figaro1k" / kind / "Testing").mkdir(parents=True)
    for p in real:
        (tmp_path / "figaro1k" / "Original" / "Testing" / p.image.name).symlink_to(p.image)
        (tmp_path / "figaro1k" / "GT" / "Testing" / p.mask.name).symlink_to(p.mask)
    (tmp_path / "figaro1k" / "Original" / "Testing" / "Frame-copy-org.jpg").symlink_to(real[0].image)
    pairs = data.resolve("figaro-test", tmp_path)
    assert [p.image.name for p in pairs] == [p.image.name for p in real]
    assert "Frame-copy-org.jpg has no frame number" in caplog.text
