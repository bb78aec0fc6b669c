import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from training import augment  # noqa: E402
from training.data import resolve  # noqa: E402
from training.evaluate import evaluate, torch_predictor  # noqa: E402
from training.metrics import MaskMetrics  # noqa: E402
from training.train import TrainConfig, load_checkpoint, train  # noqa: E402


def ctrl_c_as_epoch_ends(monkeypatch, epoch: int) -> list:
    """A Ctrl-C (KeyboardInterrupt) as epoch `epoch` ends: plot_curves runs once an epoch's checkpoints and its
    metrics row are written. Returns the list that gets an entry per epoch ended."""
    from training import train as train_module
    ended = []

    def stop(*args):
        ended.append(1)
        if len(ended) == epoch:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "plot_curves", stop)
    return ended

def test_metrics_on_known_overlaps():
    truth = np.zeros((10, 10), np.uint8)
    truth[:5] = 1
    pred = np.zeros_like(truth)
    pred[:4] = 1
    pred[9, 0] = 1
    m = MaskMetrics()
    m.update(pred, truth)
    s = m.summary()
    assert s["iou"] == pytest.approx(40 / 51)
    assert s["f1"] == pytest.approx(80 / 91)
    assert s["pixel_accuracy"] == pytest.approx(89 / 100)


def test_augmentation_keeps_image_and_mask_aligned(data_root):
    img, mask = resolve("figaro-test", data_root)[0].load()
    rng = np.random.default_rng(1)
    cfg = augment.AugmentConfig()
    for _ in range(5):
        a_img, a_mask = augment.geometric(img, mask, cfg, rng, (128, 128))
        assert a_img.shape == (128, 128, 3) and a_mask.shape == (128, 128)
        assert set(np.unique(a_mask)) <= {0, 1}
    # the same warp applied to the mask as an image must land where the mask went
    rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
    _, warped_mask = augment.geometric(img, mask, cfg, rng1, (128, 128))
    as_img, _ = augment.geometric(np.repeat(mask[..., None] * 255, 3, 2), mask, cfg, rng2, (128, 128))
    agree = ((as_img[..., 0] > 127) == warped_mask.astype(bool)).mean()
    assert agree > 0.97
    out = augment.photometric(img, cfg, rng)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_letterbox_keeps_aspect_and_pads_with_zeros(data_root):
    img, _ = resolve("figaro-test", data_root)[0].load()
    out = augment.letterbox(img, (256, 256))
    assert out.shape == (256, 256, 3)
    h, w = img.shape[:2]
    if h > w:  # portrait: padding left and right
        assert out[:, 0].max() == 0 and out[:, 128].max() > 0


def test_a_few_steps_on_real_pairs_lower_the_loss_and_resume(tmp_path, data_root):
    cfg = TrainConfig(variant="unet-226k", data=["figaro-train"], data_root=str(data_root), size=64, epochs=3,
                      batch=4, lr=3e-3, limit=16, augment="flips", out=str(tmp_path / "run"))
    train(cfg, progress=False)
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train_loss"]) for r in rows]
    assert len(rows) == 3 and losses[-1] < losses[0]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    model, ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["variant"] == "unet-226k" and ckpt["epoch"] == 2 and ckpt["size"] == [64, 64]
    # resuming a finished run trains no more epochs and keeps the weights
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(cfg, progress=False)
    after, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(before[k], v) for k, v in after.state_dict().items())
    # a different configuration in the same folder is refused rather than mixed, naming what changed
    with pytest.raises(ValueError, match=r"another configuration \(lr differ"):
        train(TrainConfig(**{**cfg.__dict__, "lr": 1e-4}), progress=False)
    # the thread count only changes speed: a run resumes with another one (e.g. once a core is free)
    train(TrainConfig(**{**cfg.__dict__, "threads": 1}), progress=False)


def test_evaluate_scores_a_perfect_predictor_as_one(data_root):
    pairs = resolve("figaro-test", data_root)[:4]
    truth = {i: p.load()[1] for i, p in enumerate(pairs)}
    calls = iter(range(100))

    def oracle(batch):  # the true masks, at the model's size
        import cv2
        return np.stack([cv2.resize(truth[next(calls)].astype(np.float32), batch.shape[2:0:-1],
                                    interpolation=cv2.INTER_LINEAR) for _ in batch])
    m = evaluate(oracle, pairs, (256, 256), batch=4, progress=False)
    assert m["iou"] > 0.95 and m["images"] == 4 and set(m["groups"]) <= {"straight", "wavy", "curly", "kinky",
                                                                          "braids", "dreadlocks", "short-men"}
    model = torch.nn.Conv2d(3, 1, 1)  # an untrained model scores far lower
    assert evaluate(torch_predictor(model), pairs, (64, 64), progress=False)["iou"] < m["iou"]


def test_prune_distils_a_small_variant_from_a_trained_teacher(tmp_path, data_root):
    from training.cli import main
    from training.losses import distillation
    common = ["--data", "figaro-train", "--data-root", str(data_root), "--size", "64", "--batch", "4",
              "--limit", "8", "--augment", "flips", "--epochs", "1"]
    assert main(["train", "--variant", "unet-1.8m", *common, "--out", str(tmp_path / "teacher")]) == 0
    teacher = tmp_path / "teacher" / "best.pt"
    assert main(["prune", "--variant", "unet-226k", "--teacher", str(teacher), *common,
                 "--out", str(tmp_path / "student")]) == 0
    _, ckpt = load_checkpoint(tmp_path / "student" / "best.pt")
    assert ckpt["variant"] == "unet-226k" and ckpt["config"]["teacher"] == str(teacher)
    assert main(["prune", "--variant", "unet-226k", "--teacher", str(tmp_path / "absent.pt"), *common]) == 2
    # with alpha = 1 the loss is minimised by the teacher's own logits, not the ground truth's
    t = torch.tensor([[[[0.3, 0.8]]]])
    truth = torch.tensor([[[[0.0, 1.0]]]])
    near_teacher = torch.logit(t)
    near_truth = torch.tensor([[[[-8.0, 8.0]]]])
    assert distillation(near_teacher, truth, t, alpha=1.0) < distillation(near_truth, truth, t, alpha=1.0)


def test_flip_averaged_views_are_the_mean_over_the_mirror_image():
    from training.evaluate import mean_over_views
    from training.models import build_model
    from training.train import TrainConfig
    torch.manual_seed(0)
    teacher = build_model("mobile-unet").eval()
    x = torch.rand(2, 3, 64, 96)
    plain, flipped = mean_over_views(teacher, x), mean_over_views(teacher, x.flip(-1)).flip(-1)
    both = mean_over_views(teacher, x, flip=True)
    assert torch.allclose(both, (plain + flipped) / 2)
    assert not torch.allclose(both, plain)  # a random network is not mirror-symmetric
    assert torch.allclose(mean_over_views(teacher, x.flip(-1), flip=True).flip(-1), both, atol=1e-6)  # symmetric
    with pytest.raises(ValueError, match="teacher_flip needs a teacher"):
        TrainConfig(teacher_flip=True)


def test_views_at_several_sizes_average_the_views_stretched_back():
    import torch.nn.functional as F

    from training.evaluate import mean_over_views
    from training.models import build_model
    from training.train import TrainConfig
    torch.manual_seed(0)
    teacher = build_model("mobile-unet").eval()
    x = torch.rand(2, 3, 64, 64)
    plain = mean_over_views(teacher, x)
    assert torch.equal(mean_over_views(teacher, x, sizes=[64]), plain)  # the training size alone: the plain view
    finer = torch.sigmoid(teacher(F.interpolate(x, size=(96, 96), mode="bilinear", antialias=True)))
    finer = F.interpolate(finer, size=(64, 64), mode="bilinear")
    both = mean_over_views(teacher, x, sizes=[64, 96])
    assert both.shape == plain.shape
    assert torch.allclose(both, (plain + finer) / 2, atol=1e-6)
    assert not torch.allclose(both, plain, atol=1e-3)  # the finer view changes the targets
    # with flips, each size's mirror image too: the targets are mirror-symmetric
    flipped = mean_over_views(teacher, x, flip=True, sizes=[64, 96])
    assert not torch.allclose(flipped, both, atol=1e-3)
    assert torch.allclose(mean_over_views(teacher, x.flip(-1), flip=True, sizes=[64, 96]).flip(-1), flipped, atol=1e-5)
    with pytest.raises(ValueError, match="teacher_sizes needs a teacher"):
        TrainConfig(teacher_sizes=[288])
    with pytest.raises(ValueError, match="300 is not a positive multiple of 32"):
        TrainConfig(teacher="t.pt", teacher_sizes=[288, 300])


def test_evaluate_measures_a_checkpoint_over_views(tmp_path, data_root):
    """`training evaluate --flip --sizes` scores what a teacher of those views would teach: the default's committed
    checkpoint on real photos, where the views' mean is the better mask."""
    import json

    from training.cli import main
    checkpoint = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "mobile-unet-wide-lean-ctx-finish-288.pt"
    common = [str(checkpoint), "--data", "fasseg-v2-test", "--data-root", str(data_root)]
    assert main(["evaluate", *common, "--json", str(tmp_path / "plain.json")]) == 0
    assert main(["evaluate", *common, "--flip", "--sizes", "288", "352", "--json", str(tmp_path / "views.json")]) == 0
    plain, views = (json.loads((tmp_path / f"{n}.json").read_text())["fasseg-v2-test"] for n in ("plain", "views"))
    assert plain["images"] == views["images"] == 50
    assert views["iou"] > plain["iou"], (views["iou"], plain["iou"])
    assert main(["evaluate", *common, "--sizes", "300"]) == 2  # not a multiple of 32


def test_init_starts_from_another_runs_weights_and_refuses_a_mismatch(tmp_path, data_root):
    base = dict(data=["figaro-train"], data_root=str(data_root), size=64, epochs=1, batch=4, limit=8,
                augment="flips")
    train(TrainConfig(variant="unet-226k", lr=3e-3, out=str(tmp_path / "first"), **base), progress=False)
    source, _ = load_checkpoint(tmp_path / "first" / "last.pt")
    # a near-zero learning rate: the fine-tuned weights are the source's, not a fresh initialisation
    # (parameters only: batch-norm running statistics move with the data whatever the learning rate)
    train(TrainConfig(variant="unet-226k", lr=1e-12, init=str(tmp_path / "first" / "last.pt"),
                      out=str(tmp_path / "tuned"), **base), progress=False)
    tuned, ckpt = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert ckpt["config"]["init"].endswith("last.pt")
    weights = dict(source.named_parameters())
    assert all(torch.allclose(weights[k], v, atol=1e-6) for k, v in tuned.named_parameters())
    with pytest.raises(ValueError, match="holds unet-226k"):
        train(TrainConfig(variant="mobile-unet", init=str(tmp_path / "first" / "last.pt"),
                          out=str(tmp_path / "wrong"), **base), progress=False)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        train(TrainConfig(variant="unet-226k", init=str(tmp_path / "absent.pt"), out=str(tmp_path / "x"), **base),
              progress=False)


def test_freeze_bn_keeps_the_starting_batchnorm_statistics_and_still_trains_their_scale(tmp_path, data_root):
    """`--freeze-bn`: a finish whose batches hold views unlike the photos must not move the statistics the photos
    are normalised by; without it they move with the data (the test above)."""
    base = dict(variant="unet-226k", data=["figaro-train"], data_root=str(data_root), size=64, epochs=1, batch=4,
                limit=8, augment="flips", lr=3e-3)
    train(TrainConfig(out=str(tmp_path / "first"), **base), progress=False)
    source, _ = load_checkpoint(tmp_path / "first" / "last.pt")
    for freeze, out in ((True, "frozen"), (False, "moving")):
        train(TrainConfig(init=str(tmp_path / "first" / "last.pt"), freeze_bn=freeze, out=str(tmp_path / out),
                          **base), progress=False)
    start = source.state_dict()
    for out, same in (("frozen", True), ("moving", False)):
        tuned = load_checkpoint(tmp_path / out / "last.pt")[0].state_dict()
        stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
        assert stats and all(torch.equal(start[k], tuned[k]) for k in stats) == same, out
        scales = [k for k in start if k.endswith(".weight") and k.replace(".weight", ".running_mean") in start]
        assert not all(torch.equal(start[k], tuned[k]) for k in scales), f"{out}: BatchNorm scales must still train"


def test_another_variant_loads_the_layers_it_shares_and_keeps_its_own_fresh():
    """mobile-unet-wide-lean shares mobile-unet-wide's encoder and head, not its decoder."""
    from training.models import build_model
    from training.train import transfer_matching
    torch.manual_seed(1)
    wide = build_model("mobile-unet-wide")
    torch.manual_seed(2)
    lean = build_model("mobile-unet-wide-lean")
    fresh = {k: v.clone() for k, v in lean.state_dict().items()}
    loaded = transfer_matching(wide, lean)
    theirs, ours = wide.state_dict(), lean.state_dict()
    same = [k for k in ours if k in theirs and theirs[k].shape == ours[k].shape]
    assert loaded == len(same) and any(k.startswith("stem.") for k in same) and any(k.startswith("down.") for k in same)
    assert all(torch.equal(ours[k], theirs[k]) for k in same)
    own = [k for k in ours if k not in same]
    assert any(k.startswith("project.") for k in own)
    assert all(torch.equal(ours[k], fresh[k]) for k in own)


def test_a_wider_twin_warm_started_from_a_model_starts_at_its_output_and_learns():
    """mobile-unet-2x-lean-ctx (the teacher) from mobile-unet-wide-lean-ctx: the same mask at first, and the weights
    joining the new channels to the old ones move at the first step."""
    from training.models import build_model
    from training.train import embeds, widen_into
    torch.manual_seed(1)
    small = build_model("mobile-unet-wide-lean-ctx")
    for module in small.modules():  # trained-looking statistics and context branches, not the fresh zeros
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2)
    torch.nn.init.normal_(small.context.pool[-1].weight, std=0.05)
    torch.nn.init.normal_(small.context.wide[-1].weight, std=0.05)
    big = build_model("mobile-unet-2x-lean-ctx")
    assert embeds(small, big) and not embeds(big, small) and not embeds(small, build_model("mobile-unet-wide-lean"))
    widen_into(small, big)
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        assert torch.allclose(big.eval()(x), small.eval()(x), atol=1e-5)
    big.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(big(x), (x[:, :1] > 0.5).float())
    loss.backward()
    w_small = small.head.weight.shape[1]
    assert torch.count_nonzero(big.head.weight[:, w_small:]) == 0  # zeroed, yet the gradient reaches them
    assert big.head.weight.grad[:, w_small:].abs().sum() > 0
    project = big.project[0][0].weight  # the deepest 1x1 projection: old outputs, new inputs
    assert torch.count_nonzero(project[:small.project[0][0].weight.shape[0], 192:]) == 0
    assert project.grad[:160, 192:].abs().sum() > 0


def test_mirror_augmentation_makes_hair_grey_or_light_and_keeps_the_rest(data_root):
    """The hair-only recolouring changes hair pixels (less saturated) and leaves far-from-hair pixels alone."""
    import cv2
    img, mask = resolve("figaro-test", data_root)[0].load()
    rng = np.random.default_rng(3)
    for _ in range(3):
        out = augment.recolour_hair(img.astype(np.float32), mask, rng)
        sat_in = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1].astype(float)
        sat_out = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)[..., 1].astype(float)
        core = cv2.erode(mask, np.ones((15, 15), np.uint8)).astype(bool)
        far = ~cv2.dilate(mask, np.ones((41, 41), np.uint8)).astype(bool)
        assert np.abs(out[far] - img[far]).max() < 2
        assert sat_out[core].mean() < sat_in[core].mean() or out[core].mean() > img[core].mean() + 20
    cfg = augment.AugmentConfig.mirror()
    a_img, a_mask = augment.augment(img, mask, cfg, rng, (96, 96))
    assert a_img.shape == (96, 96, 3) and a_img.dtype == np.uint8 and set(np.unique(a_mask)) <= {0, 1}
    assert set(augment.AUGMENT_PRESETS) >= {"full", "flips", "mirror"}


def test_synthetic_hat_covers_the_top_of_the_hair_and_is_labelled_not_hair(data_root):
    img, mask = resolve("figaro-test", data_root)[0].load()
    img, mask = augment.stretch(img, (128, 128)), augment.stretch(mask, (128, 128), interpolation=0)
    rng = np.random.default_rng(5)
    for _ in range(5):
        out, new_mask = augment.add_hat(img, mask, rng)
        hat = (mask == 1) & (new_mask == 0)
        assert hat.sum() > 20, "the hat covers some hair"
        assert not ((mask == 0) & (new_mask == 1)).any(), "a hat never adds hair"
        rows = np.nonzero(hat.any(1))[0]
        hair_rows = np.nonzero(mask.any(1))[0]
        assert rows.min() <= np.percentile(hair_rows, 50), "the hat sits on the upper part of the hair"
        changed = np.abs(out.astype(int) - img.astype(int)).max(-1) > 0
        assert changed[hat].mean() > 0.9
        ys = np.nonzero(mask)[0]
        top, p60 = ys.min(), np.percentile(ys, 60)
        assert np.nonzero(changed.any(1))[0].max() <= p60 + 0.3 * (p60 - top) + 3, "below the hat nothing changes"
    assert augment.AUGMENT_PRESETS["mirror-hats"]().hat > 0


def test_face_dressing_finds_the_face_and_never_touches_the_hair(data_root):
    """`mirror-faces`: glasses and aged skin land on the face a Haar cascade finds on a real frontal photo, the
    hair's pixels stay as they were (the label is unchanged: neither is hair), and a faceless image is left alone."""
    import dataclasses

    import cv2
    img, mask = resolve("fasseg-v2-test", data_root)[0].load()
    face = augment.FaceFinder()(img)
    assert face is not None, "a FASSEG frontal face is found"
    x, y, w, h = face
    hair_rows = np.nonzero(mask.any(1))[0]
    assert y + h / 2 > hair_rows.min(), "the face's centre is below the top of the hair"
    assert mask[y + h // 2, x + w // 2] == 0, "the face's centre is not hair"
    cfg = dataclasses.replace(augment.AugmentConfig.mirror_faces(), glasses=1.0, aged_skin=1.0)
    rng = np.random.default_rng(2)
    for _ in range(3):
        out = augment.dress_face(img, mask, face, cfg, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        changed = np.abs(out.astype(int) - img.astype(int)).max(-1) > 3
        assert not changed[mask == 1].any(), "hair pixels are never changed"
        ys, xs = np.nonzero(changed)
        assert changed.sum() > 0.3 * w * h
        assert x <= xs.mean() <= x + w and y <= ys.mean() <= y + h, "the change is centred on the face"
        box = np.zeros_like(changed)
        box[max(0, y - h // 4):y + h + h // 2, max(0, x - w // 4):x + w + w // 4] = True
        assert changed[~box].mean() < 0.01, "nothing changes far from the face"
    def sat(a):
        return cv2.cvtColor(a, cv2.COLOR_RGB2HSV)[..., 1][y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4]
    aged = augment.dress_face(img, mask, face, dataclasses.replace(cfg, glasses=0.0), np.random.default_rng(0))
    assert sat(aged).mean() < sat(img).mean(), "aged skin is paler (less saturated)"
    assert augment.FaceFinder()(np.full((200, 200, 3), 128, np.uint8)) is None
    assert augment.dress_face(img, mask, None, cfg, rng) is img


def test_batches_find_each_face_once_for_the_face_preset(data_root):
    from training.data import load_pairs
    from training.train import Batches
    pairs = resolve("celeb1k-train", data_root)[:8]
    arrays, pairs, _ = load_pairs(pairs)
    cfg = TrainConfig(data=["celeb1k-train"], data_root=str(data_root), size=64, batch=4, augment="mirror-faces")
    batches = Batches(arrays, pairs, cfg, np.random.default_rng(0))
    shapes = [(x.shape, y.shape) for x, y, _ in batches.epoch()]
    assert shapes == [((4, 3, 64, 64), (4, 1, 64, 64))] * 2
    assert set(batches.faces) == set(range(8)), "every image's face looked for, once"
    assert sum(f is not None for f in batches.faces.values()) >= 6, "frontal celeb1k faces are found"
    plain = Batches(arrays, pairs, TrainConfig(**{**cfg.__dict__, "augment": "mirror-hats"}), np.random.default_rng(0))
    list(plain.epoch())
    assert plain.find_face is None and not plain.faces, "other presets skip the detector"


def test_hard_mining_draws_photos_by_their_last_loss(data_root):
    """`hard`: that share of an epoch is drawn by each photo's last loss; a repeated pair is one photo; before any
    loss is known the order is the plain one."""
    from training.data import load_pairs
    from training.train import Batches
    pairs = resolve("figaro-train", data_root)[:10]
    arrays, pairs, _ = load_pairs(pairs)
    pairs, arrays = pairs * 2, arrays * 2  # as --repeat makes them
    cfg = TrainConfig(data=["figaro-train"], data_root=str(data_root), size=32, batch=4, augment="flips", hard=0.5)
    plain = TrainConfig(**{**cfg.__dict__, "hard": 0.0})
    batches = Batches(arrays, pairs, cfg, np.random.default_rng(3))
    assert list(batches.key) == list(range(10)) * 2
    assert np.array_equal(batches.order(), Batches(arrays, pairs, plain, np.random.default_rng(3)).order())
    batches.record(np.arange(10), np.r_[np.full(9, 0.01), 10.0])  # photo 9 is a thousand times harder
    counts = [np.isin(batches.order(), [9, 19]).sum() for _ in range(50)]
    # 10 of the 20 draws are redrawn, almost all of them photo 9; its 2 plain draws each survive half the time
    assert 10 <= np.mean(counts) <= 12
    easy = Batches(arrays, pairs, plain, np.random.default_rng(3))
    easy.record(np.arange(10), np.r_[np.full(9, 0.01), 10.0])
    assert np.mean([np.isin(easy.order(), [9, 19]).sum() for _ in range(50)]) == 2, "off: losses change nothing"
    x, y, photos = next(batches.epoch())
    assert x.shape == (4, 3, 32, 32) and y.shape == (4, 1, 32, 32) and set(photos) <= set(range(10))
    with pytest.raises(ValueError, match="hard must lie in"):
        TrainConfig(hard=1.0)
    with pytest.raises(ValueError, match="use one of them"):
        TrainConfig(hard=0.3, balance=True)


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default():
    from training.train import config_changes
    current = TrainConfig(epochs=3).__dict__
    saved = {k: v for k, v in current.items() if k not in ("loss", "hard")}
    assert config_changes(saved, current) == []
    assert config_changes(saved, {**current, "loss": "bce-lovasz"}) == ["loss"]
    assert config_changes(current, {**current, "out": current["out"] + "/", "threads": 1}) == [], "the same run"


def test_lovasz_hinge_of_a_hard_prediction_is_twice_its_iou_loss():
    """At logits of +-1 (each pixel's hinge error 0 when right, 2 when wrong) the Lovasz extension is exactly twice
    1 - IoU of the predicted mask, per image, averaged; at logits of 0 it is 1."""
    from training.losses import GROUND_TRUTH_LOSSES, lovasz_hinge
    g = torch.Generator().manual_seed(1)
    truth = (torch.rand(3, 1, 12, 12, generator=g) > 0.5).float()
    pred = truth.clone()
    pred[0, 0, :4] = 1 - pred[0, 0, :4]  # wrong on a third of the first image
    pred[1, 0, 5, 5] = 1 - pred[1, 0, 5, 5]  # one pixel of the second
    logits = pred * 2 - 1
    inter, union = (pred * truth).flatten(1).sum(1), ((pred + truth) > 0).float().flatten(1).sum(1)
    want = (2 * (1 - inter / union)).mean()
    assert torch.allclose(lovasz_hinge(logits, truth), want) and want > 0.1
    assert torch.allclose(lovasz_hinge(torch.zeros_like(truth), truth), torch.tensor(1.0))
    logits.requires_grad_(True)
    GROUND_TRUTH_LOSSES["bce-lovasz"](logits, truth).backward()
    assert logits.grad[0, 0, :4].abs().sum() > 0, "the wrong pixels get a gradient"
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="dice")


def test_per_sample_loss_averages_to_the_training_loss():
    from training.losses import bce_dice, per_sample_loss
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 1, 16, 16, generator=g)
    target = (torch.rand(5, 1, 16, 16, generator=g) > 0.6).float()
    each = per_sample_loss(logits, target)
    assert each.shape == (5,) and torch.allclose(each.mean(), bce_dice(logits, target))
    target[2] = (logits[2] > 0).float()  # one sample the model already gets right
    assert per_sample_loss(logits, target).argmin() == 2


def test_a_target_with_no_hair_is_judged_by_bce_alone_and_leaves_the_others_dice_as_it_was():
    """A view of scenery (an all-zero target): its soft Dice is 1 - eps / (sum(p) + eps), near 1 whatever the model
    does until every pixel is certain, so it is left out; the samples with hair keep their own mean Dice."""
    import torch.nn.functional as F

    from training.losses import bce_dice, dice_loss, dice_per_sample
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 16, 16, generator=g, requires_grad=True)
    target = (torch.rand(4, 1, 16, 16, generator=g) > 0.6).float()
    target[1] = 0  # scenery
    each = dice_per_sample(logits, target)
    assert each[1] == 0 and (each[[0, 2, 3]] > 0.1).all()
    assert torch.allclose(dice_loss(logits, target), dice_loss(logits[[0, 2, 3]], target[[0, 2, 3]]))
    assert torch.allclose(bce_dice(logits, target),
                          F.binary_cross_entropy_with_logits(logits, target) + each[[0, 2, 3]].mean())
    bce_dice(logits[1:2], target[1:2]).backward()  # scenery alone: BCE pulls every pixel towards "no hair"
    assert (logits.grad[1] > 0).all() and logits.grad[[0, 2, 3]].abs().sum() == 0


def test_a_hard_mining_run_keeps_its_loss_table_for_a_resume(tmp_path, data_root):
    cfg = TrainConfig(variant="unet-226k", data=["figaro-train"], data_root=str(data_root), size=32, epochs=1,
                      batch=4, limit=12, augment="flips", hard=0.5, out=str(tmp_path / "run"))
    train(cfg, progress=False)
    _, ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    table = ckpt["photo_loss"]
    assert table.shape == (12,) and (np.isfinite(table) & (table > 0)).all(), "every photo of the epoch scored"


def test_cloth_hats_take_a_hairless_patch_of_another_photo(data_root):
    """`hat_cloth`: the hat is made of a square of another photo's lower half with almost no hair in it (real
    clothes' texture), still labelled not hair; a photo that is all hair gives no patch."""
    img, mask = resolve("figaro-test", data_root)[0].load()
    donor_img, donor_mask = resolve("fasseg-v2-test", data_root)[0].load()
    rng = np.random.default_rng(3)
    for _ in range(5):
        patch = augment.cloth_patch(donor_img, donor_mask, rng)
        assert patch is not None and patch.shape[0] == patch.shape[1] >= 8
        found = [(y, x) for y in range(donor_img.shape[0] - patch.shape[0] + 1)
                 for x in range(0, donor_img.shape[1] - patch.shape[1] + 1)
                 if y >= donor_img.shape[0] // 2 and (donor_img[y, x] == patch[0, 0]).all()
                 and (donor_img[y:y + patch.shape[0], x:x + patch.shape[1]] == patch).all()]
        assert found, "the patch is a square of the donor's lower half"
        y, x = found[0]
        assert donor_mask[y:y + patch.shape[0], x:x + patch.shape[1]].mean() < 0.02
    assert augment.cloth_patch(img, np.ones_like(mask), rng) is None
    assert augment.AUGMENT_PRESETS["mirror-cloth"]().hat_cloth > 0
    small, small_mask = augment.stretch(img, (128, 128)), augment.stretch(mask, (128, 128), interpolation=0)
    cloth = np.zeros((8, 8, 3), np.uint8)
    cloth[::2] = 255  # stripes: a texture no plain hat has
    out, new_mask = augment.add_hat(small, small_mask, np.random.default_rng(1), cloth)
    hat = (small_mask == 1) & (new_mask == 0)
    assert hat.sum() > 20 and not ((small_mask == 0) & (new_mask == 1)).any()
    import cv2
    inside = cv2.erode(hat.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)  # past the hat's soft edge
    stretched = cv2.resize(cloth, (128, 128), interpolation=cv2.INTER_LINEAR)[..., 0]
    grey = out.mean(-1)
    dark, bright = inside & (stretched < 30), inside & (stretched > 225)
    assert dark.sum() > 20 and bright.sum() > 20
    assert (grey[dark] < 40).all() and (grey[bright] > 120).all(), "the hat shows the cloth's stripes, shaded"


def test_augment_gallery_shows_each_preset_on_the_same_photos(data_root, tmp_path):
    import cv2

    from training.cli import main
    out = tmp_path / "gallery.jpg"
    assert main(["augment-gallery", "--count", "3", "--size", "64", "--presets", "mirror-faces", "mirror-cloth",
                 "--data-root", str(data_root), "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (3 * (18 + 64), 3 * 64, 3), "a titled row per preset and the photos, a column per photo"
    rows = [img[r * 82 + 18:(r + 1) * 82].astype(int) for r in range(3)]
    assert np.abs(rows[1] - rows[0]).mean() > 10 and np.abs(rows[2] - rows[1]).mean() > 10
    assert main(["augment-gallery", "--presets", "no-such", "--out", str(out)]) == 2


def test_the_moving_average_averages_weights_and_batchnorm_statistics():
    from training.train import moving_average
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = moving_average(model, 0.75)
    with torch.no_grad():
        for value in (1.0, 3.0):  # the first update takes the weights as they are, later ones 1/4 of the step
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
            ema.update_parameters(model)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 1.5))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 1.5))
    with pytest.raises(ValueError, match="ema must be in"):
        TrainConfig(ema=1.0)


def test_a_ctrl_c_while_an_epoch_s_files_are_written_stops_training_once_they_are_all_written(
        tmp_path, data_root, monkeypatch, sigint_as_in_a_terminal):
    """A real SIGINT in the middle of the first epoch's curves (matplotlib's first import there) was raised inside
    it: the curves were never written, and the C extension it landed in lost it, died of it or aborted."""
    import os
    import signal

    from training import train as train_module
    drawn = []

    def curves_hit_by_ctrl_c(csv_path, png_path):
        os.kill(os.getpid(), signal.SIGINT)
        drawn.append(len(Path(csv_path).read_text().splitlines()))
        Path(png_path).write_bytes(b"curves")
    monkeypatch.setattr(train_module, "plot_curves", curves_hit_by_ctrl_c)
    cfg = TrainConfig(variant="unet-226k", data=["fasseg-v2-train"], data_root=str(data_root), size=32, epochs=3,
                      batch=4, limit=4, augment="flips", out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    run = tmp_path / "run"
    assert drawn == [2]  # header and epoch 1, drawn once: training stopped there
    assert (run / "curves.png").read_bytes() == b"curves"
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_moving_average_of_the_weights_is_validated_saved_and_resumed(tmp_path, data_root, monkeypatch):
    cfg = TrainConfig(variant="unet-226k", data=["figaro-train"], data_root=str(data_root), size=32, epochs=2,
                      batch=4, lr=3e-3, limit=8, augment="flips", ema=0.999999, out=str(tmp_path / "run"))
    epochs_ended = ctrl_c_as_epoch_ends(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    train(cfg, progress=False)
    final = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert final["epoch"] == 1 and len(epochs_ended) == 2

    def averaged(ckpt):
        return {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    weights = [k for k, _ in load_checkpoint(tmp_path / "run" / "last.pt")[0].named_parameters()]
    raw, ema_first, ema_final = first["state_dict"], averaged(first), averaged(final)
    # the optimiser moved the weights; at this decay their average stays where it started, across the resume
    # (an average started afresh from the resumed weights would sit on them)
    assert max(float((raw[k] - ema_first[k]).abs().max()) for k in weights) > 1e-3
    assert all(torch.allclose(ema_first[k], ema_final[k], atol=1e-4) for k in weights)
    # best.pt holds the average of its epoch: what was validated is what gets exported
    _, best = load_checkpoint(tmp_path / "run" / "best.pt")
    expected = ema_first if best["epoch"] == 0 else ema_final
    assert all(torch.equal(best["state_dict"][k], expected[k]) for k in weights)


def test_teacher_skip_gives_the_skipped_photos_their_labels_as_targets(data_root):
    """A photo of a `teacher_skip` set learns from its label alone, wherever it is drawn from (here celeb1k-train
    as well as celeb1k-train-hat); every other photo keeps the teacher's targets."""
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    from training.data import load_pairs
    from training.models import build_model
    from training.train import Batches, teacher_targets
    hats = resolve("celeb1k-train-hat", data_root)
    pairs = [p for p in resolve("celeb1k-train", data_root)[:40] if p not in hats] + hats[:2]
    arrays, pairs, _ = load_pairs(pairs)
    cfg = TrainConfig(variant="mobile-unet", data=["celeb1k-train", "celeb1k-train-hat"], data_root=str(data_root),
                      size=64, batch=4, augment="flips", teacher="t.pt", teacher_skip=["celeb1k-train-hat"])
    batches = Batches(arrays + arrays[-2:], pairs + pairs[-2:], cfg, np.random.default_rng(0))
    assert list(np.flatnonzero(batches.labels_only)) == [len(pairs) - 2, len(pairs) - 1]
    torch.manual_seed(0)
    teacher = build_model("mobile-unet").eval()
    x = torch.randn(4, 3, 64, 64)
    y = (torch.rand(4, 1, 64, 64) > 0.5).float()
    photos = np.array([0, len(pairs) - 1, 1, len(pairs) - 2])
    soft = teacher_targets(teacher, x, y, batches.labels_only[photos], cfg)
    plain = teacher_targets(teacher, x, y, np.zeros(4, bool), cfg)
    assert torch.equal(soft[[1, 3]], y[[1, 3]]), "the hat photos' targets are their labels"
    assert torch.equal(soft[[0, 2]], plain[[0, 2]]) and not torch.equal(plain[[1, 3]], y[[1, 3]])
    with pytest.raises(ValueError, match="teacher_skip needs a teacher"):
        TrainConfig(teacher_skip=["celeb1k-train-hat"])
    with pytest.raises(ValueError, match="unknown data set 'hats'"):
        TrainConfig(teacher="t.pt", teacher_skip=["hats"])
    with pytest.raises(ValueError, match="teacher_skip celeb1k-train-hat: none of its 16 photos"):
        Batches(arrays[:4], pairs[:4], cfg, np.random.default_rng(0))  # the hats are not among the photos


def test_teacher_band_keeps_the_teacher_near_the_hair_edge_and_the_label_beyond_it(data_root):
    """`--teacher-band PX`: on a real celeb1k label, the targets are the teacher's within PX pixels of the hair's
    edge (on both sides of it) and the label everywhere else; a photo without hair learns from its label alone."""
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    import cv2

    from training.data import load_pairs
    from training.models import build_model
    from training.train import edge_band, teacher_targets
    arrays, _, _ = load_pairs(resolve("celeb1k-train", data_root)[:1])
    label = cv2.resize(arrays[0][1], (64, 64), interpolation=cv2.INTER_NEAREST)
    y = torch.from_numpy((label > 0).astype(np.float32))[None, None].repeat(2, 1, 1, 1)
    y[1] = 0  # a view with no hair in it
    assert 0.05 < float(y[0].mean()) < 0.8, "the photo shows hair and more than hair"
    torch.manual_seed(0)
    teacher = build_model("mobile-unet").eval()
    x = torch.randn(2, 3, 64, 64)
    cfg = TrainConfig(variant="mobile-unet", size=64, teacher="t.pt", teacher_band=3)
    soft = teacher_targets(teacher, x, y, np.zeros(2, bool), cfg)
    plain = teacher_targets(teacher, x, y, np.zeros(2, bool), TrainConfig(variant="mobile-unet", size=64,
                                                                          teacher="t.pt"))
    # the band by distance: a pixel is in it when the other class lies within 3 pixels (chessboard distance)
    hair = y[0, 0].numpy().astype(np.uint8)
    kernel = np.ones((7, 7), np.uint8)
    near = (cv2.dilate(hair, kernel) != cv2.erode(hair, kernel))
    band = edge_band(y, 3)[0, 0].numpy()
    assert np.array_equal(band, near)
    assert near[hair == 1].any() and near[hair == 0].any() and not near.all(), "both sides of the edge, not all"
    assert torch.equal(soft[0, 0][band], plain[0, 0][band]), "the teacher's targets near the edge"
    assert torch.equal(soft[0, 0][~band], y[0, 0][~band]), "the label beyond the band"
    assert torch.equal(soft[1], y[1]), "no hair in view: the label alone"
    with pytest.raises(ValueError, match="teacher_band needs a teacher"):
        TrainConfig(teacher_band=4)
    with pytest.raises(ValueError, match="teacher_band must be at least 0"):
        TrainConfig(teacher="t.pt", teacher_band=-1)


def test_teacher_skip_takes_a_folder_set_of_the_training_data(tmp_path):
    """`--teacher-skip folder:PATH` (it took only named sets): that folder's photos get their labels; a folder
    that is not in the training data changes nothing and is refused by name."""
    from training.data import load_pairs
    from training.train import Batches
    rng = np.random.default_rng(0)
    for name in ("mine", "other"):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "masks").mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / name / "images" / f"{i}.png"), rng.integers(0, 255, (32, 32, 3), np.uint8))
            cv2.imwrite(str(tmp_path / name / "masks" / f"{i}.png"), (rng.random((32, 32)) > 0.5).astype(np.uint8) * 255)
    sets = [f"folder:{tmp_path / n}" for n in ("mine", "other")]
    arrays, pairs, _ = load_pairs(resolve(sets[0]) + resolve(sets[1]))
    cfg = TrainConfig(variant="mobile-unet", data=sets, size=32, batch=2, augment="flips", teacher="t.pt",
                      teacher_skip=[sets[0]])
    assert list(Batches(arrays, pairs, cfg, np.random.default_rng(0)).labels_only) == [True, True, False, False]
    alone = TrainConfig(variant="mobile-unet", data=sets[:1], size=32, batch=2, augment="flips", teacher="t.pt",
                        teacher_skip=[sets[1]])
    with pytest.raises(ValueError, match=f"teacher_skip {sets[1]}: none of its 2 photos"):
        Batches(arrays[:2], pairs[:2], alone, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown data set 'album:"):
        TrainConfig(teacher="t.pt", teacher_skip=[f"album:{tmp_path}"])


def test_the_grey_finish_keeps_the_geometry_and_recolours_only_hair_and_faces(data_root):
    """`flips-grey`: the photo stays where it is (no zoom or shift: the label is the photo's own, maybe mirrored);
    over many draws some photos get grey, white or blond hair or an aged face, and nothing changes far from both."""
    import dataclasses

    import cv2

    from training.train import Batches
    pair = resolve("celeb1k-train", data_root)[0]
    img, mask = pair.load()
    cfg = augment.AUGMENT_PRESETS["flips-grey"]()
    assert cfg.hair_recolour > 0 and cfg.aged_skin > 0 and cfg.scale == (1, 1) and cfg.hat == 0
    face = augment.FaceFinder()(img)
    assert face is not None, "a frontal celeb1k face is found"
    size = (128, 128)
    plain = {flip: augment.augment(img, mask, dataclasses.replace(augment.AugmentConfig.flips_only(), hflip=flip),
                                   np.random.default_rng(0), size) for flip in (0.0, 1.0)}
    x, y, w, h = (round(v * size[0] / img.shape[0]) for v in face)
    rng, changed = np.random.default_rng(0), 0
    for _ in range(24):
        out, out_mask = augment.augment(img, mask, cfg, rng, size, face=face)
        flip = 1.0 if np.array_equal(out_mask, plain[1.0][1]) else 0.0
        ref, ref_mask = plain[flip]
        assert np.array_equal(out_mask, ref_mask), "only mirrored, never moved"
        near = cv2.dilate(ref_mask, np.ones((9, 9), np.uint8)).astype(bool)
        fx = size[1] - x - w if flip else x  # the face's box, mirrored with the photo
        near[max(0, y - h // 2):y + 3 * h // 2, max(0, fx - w // 4):fx + w + w // 4] = True
        assert np.abs(out[~near].astype(int) - ref[~near]).max() <= 2
        changed += np.abs(out[near].astype(int) - ref[near]).mean() > 2
    assert 2 <= changed <= 20
    assert Batches([(img, mask)], [pair], TrainConfig(data=["celeb1k-train"], augment="flips-grey"),
                   rng).find_face is not None, "the preset's aged faces need the face finder"


def test_each_photo_is_counted_in_its_own_group_when_a_pair_is_skipped(data_root):
    """FASSEG V3 Test has pairs whose image and label sizes differ (skipped): the groups (poses) were taken before
    the skip, so every later photo was counted under its neighbour's pose."""
    from collections import Counter

    from training.data import load_pairs
    pairs = resolve("fasseg-v3-test", data_root)
    _, kept, skipped = load_pairs(pairs)
    assert skipped, "the data set's known mismatched pairs"
    result = evaluate(lambda batch: np.zeros(batch.shape[:3], np.float32), pairs, (32, 32), progress=False)
    assert {g: m["images"] for g, m in result["groups"].items()} == dict(Counter(p.group for p in kept))


def test_a_resume_rewrites_metrics_csv_to_the_epochs_last_pt_holds(tmp_path, data_root):
    """A Ctrl-C between an epoch's CSV row and its last.pt repeated the epoch's row on resume; a 0-byte metrics.csv
    lost its header (exit 2 'epoch' after training); a row cut short had the next one glued on. Each state is made
    by setting last.pt back an epoch, as a save that never happened leaves it."""
    cfg = TrainConfig(variant="unet-226k", data=["fasseg-v2-train"], data_root=str(data_root), size=32, epochs=3,
                      batch=2, limit=4, augment="flips", out=str(tmp_path / "run"))
    train(cfg, progress=False)
    log, last = tmp_path / "run" / "metrics.csv", tmp_path / "run" / "last.pt"
    full = log.read_text()
    lines = full.splitlines(keepends=True)

    def resume_from_epoch_2(csv_text: str) -> list[str]:
        ckpt = torch.load(last, weights_only=False)
        torch.save({**ckpt, "epoch": 1}, last)  # epoch 3 was logged, not saved
        log.write_text(csv_text)
        train(cfg, progress=False)
        with open(log) as f:
            return [r["epoch"] for r in csv.DictReader(f)]

    assert resume_from_epoch_2(full) == ["1", "2", "3"]  # epoch 3's old row is dropped, not repeated
    assert resume_from_epoch_2("") == ["3"]  # a header again
    assert resume_from_epoch_2("".join(lines[:3]) + lines[3][:7]) == ["1", "2", "3"]  # epoch 3's row cut short
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_a_run_of_exactly_ten_steps_trains(tmp_path, data_root):
    """10 steps (epochs x batches, e.g. --limit 40 --batch 8 --epochs 2) was a ZeroDivisionError in OneCycleLR:
    its 10% warm-up was zero steps long."""
    cfg = TrainConfig(variant="unet-226k", data=["fasseg-v2-train"], data_root=str(data_root), size=32, epochs=2,
                      batch=2, limit=10, augment="flips", out=str(tmp_path / "run"))
    train(cfg, progress=False)
    _, ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["scheduler"]["total_steps"] == 10
# ---- for tests/training/test_train.py


def test_per_image_means_pooled_figures_and_an_empty_image_by_hand():
    """Three images whose per-image means and pooled (summed-pixel) figures differ, counted by hand. An image with
    no hair, predicted with none, is a correct answer: IoU = F1 = 1 (not 0, not skipped)."""
    a_truth, a_pred = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    a_truth[:5], a_pred[:4], a_pred[9, 0] = 1, 1, 1          # tp 40, fp 1, fn 10
    b_truth, b_pred = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    b_truth[0, :4], b_pred[0, 2:6] = 1, 1                     # tp 2, fp 2, fn 2
    empty = np.zeros((10, 10), np.uint8)                      # no hair, none predicted
    m = MaskMetrics()
    for pred, truth in ((a_pred, a_truth), (b_pred, b_truth), (empty, empty)):
        m.update(pred, truth)
    s = m.summary()
    assert m.ious == pytest.approx([40 / 51, 2 / 6, 1.0]) and m.f1s == pytest.approx([80 / 91, 4 / 8, 1.0])
    assert s["iou"] == pytest.approx((40 / 51 + 2 / 6 + 1) / 3)
    assert s["f1"] == pytest.approx((80 / 91 + 4 / 8 + 1) / 3)
    tp, fp, fn = 42, 3, 12
    assert s["pooled_iou"] == pytest.approx(tp / (tp + fp + fn))
    assert s["pooled_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["pooled_precision"] == pytest.approx(tp / (tp + fp)) and s["pooled_recall"] == pytest.approx(tp / (tp + fn))
    assert s["pixel_accuracy"] == pytest.approx((300 - fp - fn) / 300) and s["images"] == 3


def test_a_resumed_run_goes_on_with_its_optimiser_schedule_best_epoch_and_loss_table(tmp_path, data_root,
                                                                                    monkeypatch):
    """Stopped after epoch 2 of 3 and resumed, a run takes up where it was: AdamW has taken every step of the run
    (its moments were not started afresh), the one-cycle rate of epoch 3 is the uninterrupted run's (it depends on
    the step count alone), the hard-mining draws start from the losses last.pt kept, and the best epoch so far
    stays the best: with last.pt's best at an IoU of 1 no later epoch replaces best.pt."""
    from training import train as train_module
    common = dict(variant="unet-226k", data=["fasseg-v2-train"], data_root=str(data_root), size=32, epochs=3,
                  batch=2, limit=4, augment="flips", hard=0.5)
    train(TrainConfig(**common, out=str(tmp_path / "whole")), progress=False)
    cfg = TrainConfig(**common, out=str(tmp_path / "run"))
    ctrl_c_as_epoch_ends(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    run = tmp_path / "run"
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and np.isfinite(ckpt["photo_loss"]).all()
    ckpt["metrics"]["best"] = {"val_iou": 1.0, "epoch": 1}
    torch.save(ckpt, run / "last.pt")
    best_before = (run / "best.pt").read_bytes()
    tables = []
    order = train_module.Batches.order

    def recording(self):
        tables.append(self.loss.copy())
        return order(self)
    monkeypatch.setattr(train_module.Batches, "order", recording)
    train(cfg, progress=False)
    np.testing.assert_array_equal(tables[0], ckpt["photo_loss"])
    final = torch.load(run / "last.pt", weights_only=False)
    steps = 3 * (4 // 2)  # epochs x batches of 2 from 4 pairs
    assert final["epoch"] == 2
    assert {int(s["step"]) for s in final["optimizer"]["state"].values()} == {steps}
    assert final["scheduler"]["last_epoch"] == steps

    def rows(folder):
        with open(folder / "metrics.csv") as f:
            return list(csv.DictReader(f))
    assert [r["epoch"] for r in rows(run)] == ["1", "2", "3"]
    assert float(rows(run)[2]["lr"]) == pytest.approx(float(rows(tmp_path / "whole")[2]["lr"]), rel=1e-9)
    assert (run / "best.pt").read_bytes() == best_before


def test_evaluate_thresholds_at_the_threshold_it_is_given(data_root):
    """A predictor that says 0.6 everywhere: at 0.5 all of each photo is hair (IoU = the photo's hair share), at
    0.7 none is (IoU 0 on photos with hair)."""
    arrays = [p.load() for p in resolve("figaro-test", data_root)[:2]]

    def everywhere(batch):
        return np.full(batch.shape[:3], 0.6, np.float32)
    low = evaluate(everywhere, arrays, (32, 32), threshold=0.5, progress=False)
    high = evaluate(everywhere, arrays, (32, 32), threshold=0.7, progress=False)
    assert low["iou"] == pytest.approx(np.mean([mask.mean() for _, mask in arrays]))
    assert high["iou"] == 0.0 and high["pooled_iou"] == 0.0


def test_the_teachers_weight_changes_what_prune_learns(tmp_path, data_root):
    """alpha 0 learns from the labels alone, alpha 1 from the teacher alone: from the same seed and photos the two
    runs' losses differ (a run that ignored its teacher would give the same figures)."""
    from training.models import build_model
    from training.train import save_checkpoint
    torch.manual_seed(3)
    teacher_net = build_model("unet-226k")
    opt = torch.optim.AdamW(teacher_net.parameters())
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(teacher, teacher_net, opt, torch.optim.lr_scheduler.StepLR(opt, 1), 0,
                    TrainConfig(size=32), {})
    losses = []
    for alpha in (0.0, 1.0):
        cfg = TrainConfig(variant="unet-226k", data=["fasseg-v2-train"], data_root=str(data_root), size=32, epochs=1,
                          batch=2, limit=4, augment="flips", teacher=str(teacher), distill_alpha=alpha,
                          out=str(tmp_path / f"alpha{alpha}"))
        train(cfg, progress=False)
        with open(tmp_path / f"alpha{alpha}" / "metrics.csv") as f:
            losses.append(float(next(csv.DictReader(f))["train_loss"]))
    assert losses[0] != pytest.approx(losses[1], rel=1e-3), losses


def test_the_far_third_moves_a_third_of_the_heads_back_and_leaves_the_rest_framed(data_root):
    """`flips-far-third`: a third of the draws shrink the photo onto a wall, the rest are the photo itself (flipped
    or not); the other presets' random draws are not changed by the share (it is drawn only below 1)."""
    img, mask = resolve("celeb1k-train", data_root)[0].load()
    cfg = augment.dataclasses.replace(augment.AUGMENT_PRESETS["flips-far-third"](), hflip=0, motion_blur=0)
    assert cfg.scale_share == pytest.approx(1 / 3) and cfg.border == "wall"
    rng = np.random.default_rng(0)
    framed = augment.dataclasses.replace(cfg, scale=(1, 1), shift=0, scale_share=1.0)
    whole = augment.geometric(img, mask, framed, np.random.default_rng(0), (96, 96))[1]
    kept = [np.array_equal(augment.geometric(img, mask, cfg, rng, (96, 96))[1], whole) for _ in range(300)]
    assert 0.58 < np.mean(kept) < 0.76  # two thirds untouched (a few far draws land at scale ~1 too)
    far = augment.AUGMENT_PRESETS["flips-far"]()
    a = augment.geometric(img, mask, far, np.random.default_rng(5), (96, 96))
    b = augment.geometric(img, mask, augment.dataclasses.replace(far, scale_share=1.0), np.random.default_rng(5),
                          (96, 96))
    assert np.array_equal(a[0], b[0])


def test_the_far_finish_puts_smaller_heads_on_a_plain_wall_with_no_hair_on_it(data_root):
    """`flips-far`: a photo shrunk in the frame is framed by one flat colour (its border's median, a sensor's noise)
    with no hair in the mask there, not by its own mirror image (copies of the hair); the hair inside is the
    photo's own, moved with it."""
    img, mask = resolve("celeb1k-train", data_root)[0].load()
    cfg = augment.AUGMENT_PRESETS["flips-far"]()
    assert cfg.border == "wall" and cfg.scale[0] < 1 and cfg.motion_blur > 0 and cfg.hat == 0
    small = augment.dataclasses.replace(cfg, scale=(0.6, 0.6), shift=0, hflip=0)
    out, out_mask = augment.geometric(img, mask, small, np.random.default_rng(0), (120, 120))
    ring = np.ones((120, 120), bool)
    ring[20:100, 20:100] = False  # outside the photo, which fills the middle 72 px
    assert not out_mask[ring].any() and out_mask[30:90, 30:90].any()
    wall = out[ring].astype(float)
    assert wall.std(axis=0).max() < 6  # one colour and its noise, not a mirrored photo
    reflected = augment.geometric(img, mask, augment.dataclasses.replace(small, border="reflect"),
                                  np.random.default_rng(0), (120, 120))[1]
    assert reflected[ring].any()  # what the wall replaces: the reflected border copies the hair
    assert np.count_nonzero(out_mask) == pytest.approx(np.count_nonzero(mask) * (72 / 512) ** 2, rel=0.1)
    with pytest.raises(ValueError, match="border"):
        augment.geometric(img, mask, augment.dataclasses.replace(small, border="zero"), np.random.default_rng(0),
                          (120, 120))


def test_a_fresh_run_interrupted_before_its_first_save_leaves_the_older_run_whole(tmp_path, data_root, monkeypatch):
    """`train --no-resume` cut the old run's metrics.csv to its header before its first epoch, and kept the old
    last.pt and best.pt: a Ctrl-C in that epoch then left a run that resumed with no metrics (and whose export
    lost train.seconds). Until the new run saves its first epoch, nothing of the old one changes."""
    from training import train as train_module
    cfg = TrainConfig(variant="unet-226k", data=["fasseg-v2-train"], data_root=str(data_root), size=32, epochs=1,
                      batch=2, limit=4, augment="flips", out=str(tmp_path / "run"))
    train(cfg, progress=False)
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    def ctrl_c(*args, **kwargs):  # as the first epoch's training ends, before its validation and save
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(train_module, "evaluate", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, resume=False, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    train(cfg, resume=False, progress=False)  # saved once: the new run's rows alone
    with open(run / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]


def test_a_path_spelt_another_way_resumes_the_same_run(tmp_path, data_root):
    """`--data-root ../shared/data` against the default absolute root was 'another configuration (data_root
    differ)'; a folder:PATH data set or an --init spelt another way alike. Another place still differs."""
    import os

    from training.train import config_changes
    saved = TrainConfig(data_root=str(data_root), data=["figaro-train", f"folder:{tmp_path}"],
                        repeat={f"folder:{tmp_path}": 2}, init=str(tmp_path / "a.pt")).__dict__
    other = {**saved, "data_root": os.path.relpath(data_root), "data": ["figaro-train", f"folder:{tmp_path}/."],
             "repeat": {f"folder:{tmp_path}/.": 2}, "init": os.path.relpath(tmp_path / "a.pt")}
    assert config_changes(saved, other) == []
    assert config_changes(saved, {**other, "data_root": str(tmp_path), "init": str(tmp_path / "b.pt")}) == [
        "data_root", "init"]
