import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from training.models import VARIANTS, build_model, count_macs, count_params  # noqa: E402

# The seed design's exact figures (DESIGN.md).
SEED = {"unet-31m": (31_037_633, 48.2), "unet-1.8m": (1_864_129, 25.4), "unet-226k": (226_913, 3.35)}


@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_variants_have_the_exact_parameter_counts(name):
    params, gmacs = SEED[name]
    model = build_model(name)
    assert count_params(model) == params
    # all-convolutional: MACs scale exactly with the pixel count, so measure at 64x64 (16x cheaper)
    assert count_macs(model, (64, 64)) * 16 / 1e9 == pytest.approx(gmacs, abs=0.05)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_maps_an_image_to_one_logit_map_of_its_size(name):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96)


def test_mobile_unet_meets_the_real_time_budget():
    model = build_model("mobile-unet")
    assert count_params(model) <= 250_000
    assert count_macs(model) <= 0.35e9
    assert count_macs(build_model("unet-226k")) / count_macs(model) >= 10


def test_a_prior_channel_is_a_fourth_input_channel():
    model = build_model("mobile-unet", in_channels=4).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 64, 64)).shape == (1, 1, 64, 64)


def test_unknown_variant_names_the_known_ones():
    """It was a KeyError, whose str() quotes the message: the CLI printed `"unknown model variant 'nope'; ..."`."""
    with pytest.raises(ValueError, match="unet-226k") as info:
        build_model("unet-9000")
    assert str(info.value).startswith("unknown model variant 'unet-9000'; known: ")



def test_the_context_variant_starts_as_the_lean_model_it_is_warm_started_from():
    """GlobalContext's last layers start at zero: with the lean model's weights loaded, the output is the lean
    model's until training moves them."""
    from training.train import transfer_matching
    torch.manual_seed(0)
    lean = build_model("mobile-unet-wide-lean").eval()
    ctx = build_model("mobile-unet-wide-lean-ctx").eval()
    assert transfer_matching(lean, ctx) == len(lean.state_dict())
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ctx(x), lean(x))
    assert count_macs(ctx, (288, 288)) < 1.03 * count_macs(lean, (288, 288))


def test_the_deep_variant_starts_as_the_context_model_it_is_warm_started_from():
    """The extra residual convs start at zero (no ReLU after their zeroed BN scale, so they still get a gradient):
    with the context model's weights and the same upsampling, the output is the context model's; the shipped
    deep variant's nearest upsampling is the one change a warm start has to train away."""
    from training.train import transfer_matching
    torch.manual_seed(0)
    ctx = build_model("mobile-unet-wide-lean-ctx").eval()
    for name, upsample, same in (("bilinear", "bilinear", True), ("registered", None, False)):
        deep = build_model("mobile-unet-wide-lean-ctx-deep", **({"upsample": upsample} if upsample else {})).eval()
        assert transfer_matching(ctx, deep) == len(ctx.state_dict())
        assert count_params(deep) > 1.3 * count_params(ctx)
        x = torch.rand(1, 3, 96, 96)
        with torch.no_grad():
            assert torch.equal(deep(x), ctx(x)) is same, name
    deep.train()
    deep(torch.rand(2, 3, 64, 64)).mean().backward()
    assert all(conv[-1].weight.grad.abs().sum() > 0 for stage in deep.deeper for conv in stage)


def test_global_context_lets_every_position_see_the_whole_map():
    """Once trained (non-zero), a change in one corner of a 9x9 map (the deepest features at 288 px) moves every
    position, the far corner too; a 3x3 convolution would move only its neighbours."""
    from training.models import GlobalContext
    torch.manual_seed(0)
    block = GlobalContext(8).eval()
    for branch in (block.pool, block.wide):
        torch.nn.init.normal_(branch[-1].weight)
    x = torch.rand(1, 8, 9, 9)
    y = x.clone()
    y[..., 0, 0] += 1
    with torch.no_grad():
        moved = (block(y) - block(x)).abs().amax(1)[0]
    assert (moved > 1e-4).all()
