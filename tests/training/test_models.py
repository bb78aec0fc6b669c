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
    with pytest.raises(KeyError, match="unet-226k"):
        build_model("unet-9000")
