"""Neural neighbours, self-similarity content, the pyramid and the colour step in whole runs (real VGG19, 48-96 px)."""

import dataclasses

import pytest
import torch

import stylelab
from stylelab import Config
from stylelab.engine.events import Step
from stylelab.engine.optimize import build_model, build_style_losses, compute_targets, objective
from stylelab.image import to_tensor
from stylelab.losses.base import flatten
from stylelab.presets import preset_config, preset_schedule

NN = Config(size=96, steps=30, style_loss="nn")


def terms_at(config, content, style, image):
    model = build_model(None, config.pooling, torch.device("cpu"))
    losses = build_style_losses(config)
    targets = compute_targets(model, content, [style], config, losses)
    with torch.no_grad():
        return objective(model, image, targets, config, losses)[1]


def test_nn_is_one_at_the_content_and_its_targets_are_the_style_itself_when_the_content_is_the_style(
        content_image, style_image):
    c, s = to_tensor(content_image.resize((96, 64))), to_tensor(style_image.resize((96, 64)))
    at_content = terms_at(NN, c, s, c)
    for layer in NN.style_layers:
        assert at_content[f"style/{layer}"].item() == pytest.approx(1.0, rel=1e-5)
    # content = style: every position's nearest style hypercolumn is its own, so the raw loss of the style is 0
    model = build_model(None, NN.pooling, torch.device("cpu"))
    losses = build_style_losses(NN)
    targets = compute_targets(model, s, [s], NN, losses)
    (loss, _), = losses.values()
    stats = targets.regions[0].stats["nn"]
    with torch.no_grad():
        feats = model(s, NN.style_layers)
        other = model(c, NN.style_layers)
    for layer in NN.style_layers:
        assert float(loss.loss(flatten(feats[layer]), stats[layer])) < 1e-6
        assert float(loss.loss(flatten(other[layer]), stats[layer])) > 0.01


@pytest.mark.parametrize("extra", [
    {}, {"content_loss": "self-similarity"}, {"param": "pyramid", "optimizer": "adam", "steps": 40},
    {"style_loss": "remd", "optimizer": "adam", "steps": 40},
], ids=["nn", "self-similarity", "pyramid-adam", "remd"])
def test_runs_lower_their_style_loss_and_change_the_image(extra, content_image, style_image):
    config = dataclasses.replace(NN, **extra)
    steps = []
    image = stylelab.stylize(content_image, style_image, config, steps.append)
    steps = [s for s in steps if isinstance(s, Step)]
    assert steps[-1].terms["style"] < 0.85 * steps[0].terms["style"]
    assert all(torch.isfinite(torch.tensor(s.loss)) for s in steps)
    content = to_tensor(content_image.resize(image.size))
    assert (to_tensor(image) - content).abs().mean() > 0.02


def test_self_similarity_content_is_zero_at_the_start_and_holds_the_layout(content_image, style_image):
    steps = []
    config = dataclasses.replace(NN, content_loss="self-similarity", content_weight=5.0)
    stylelab.stylize(content_image, style_image, config, steps.append)
    assert steps[0].terms["content"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < steps[-1].terms["content"] < 0.5  # a layout-free image scores about 1


def test_nn_blends_masks_and_textures(content_image, style_image, style_image2, tmp_path):
    blended = stylelab.stylize(content_image, [style_image, style_image2], dataclasses.replace(
        NN, steps=3, style_blend=(0.7, 0.3)))
    assert blended.size == (96, 64)
    half = tmp_path / "left.png"
    from PIL import Image
    mask = Image.new("L", (120, 80), 0)
    mask.paste(255, (0, 0, 60, 80))
    mask.save(half)
    other = tmp_path / "right.png"
    Image.eval(mask, lambda v: 255 - v).save(other)
    masked = stylelab.stylize(content_image, [style_image, style_image2], dataclasses.replace(
        NN, steps=3, masks=(stylelab.config.Region(str(half), 0), stylelab.config.Region(str(other), 1))))
    assert masked.size == (96, 64)
    texture = stylelab.synthesize(style_image, (64, 64), dataclasses.replace(NN, size=64, init="noise", steps=3))
    assert texture.size == (64, 64)


def test_recolor_keeps_the_outputs_lightness_in_the_styles_range(content_image, style_image):
    from stylelab.engine.color import recolor, rgb_to_oklab

    c = to_tensor(content_image.resize((96, 64)))
    s = to_tensor(style_image)
    out = recolor(c.flip(-1), c, s)
    lab_s, lab_o, lab_in = rgb_to_oklab(s), rgb_to_oklab(out), rgb_to_oklab(c.flip(-1))
    assert float(lab_o[:, 0].min()) >= float(lab_s[:, 0].min()) - 1e-3  # the style's range of lightness
    # the content's colours on the style's palette: the output's mean colour is near the style's, not the content's
    mean_ab = lab_o[:, 1:].mean(dim=(0, 2, 3))
    assert (mean_ab - lab_s[:, 1:].mean(dim=(0, 2, 3))).norm() < 0.3 * (
        rgb_to_oklab(c)[:, 1:].mean(dim=(0, 2, 3)) - lab_s[:, 1:].mean(dim=(0, 2, 3))).norm()
    # lightness is the output's (inside the style's range), not the content's
    inside = lab_in[:, 0].clamp(float(lab_s[:, 0].min()), float(lab_s[:, 0].max()))
    assert (lab_o[:, 0] - inside).abs().mean() < 0.02
    image = stylelab.stylize(content_image, style_image, dataclasses.replace(NN, steps=2, color="recolor"))
    assert image.size == (96, 64)


def test_the_nnst_preset_and_explicit_settings():
    config = preset_config("nnst")
    assert (config.style_loss, config.style_weight, config.color) == ("nn", 30.0, "recolor")
    assert config.scales == ((64, 100), (128, 100), (256, 80), (512, 30)) and config.size == 512
    assert preset_config("nnst", size=256).scales == ((64, 100), (128, 80), (256, 30))
    assert preset_config("nnst", color="none").color == "none"
    assert preset_schedule(48, 64, (30, 80)) == ((48, 30),)
    with pytest.raises(stylelab.ConfigError, match="unknown preset 'nope'; choose one of: nnst"):
        preset_config("nope")


def test_on_the_command_line_a_flag_given_overrides_the_preset_even_at_stylelabs_default():
    from stylelab.flags import config_from_args
    from stylelab.web.schema import run_parser

    def parsed(*argv):
        return config_from_args(run_parser().parse_args(["c.png", "s.png", "-o", "o.png", *argv]))

    assert parsed("--preset", "nnst").style_weight == 30.0
    assert parsed("--preset", "nnst", "--color", "none").color == "none"  # the default value, but given
    assert parsed("--preset", "nnst", "--style-weight", "10").style_weight == 10.0  # the default value, but given
    assert parsed("--preset", "nnst", "--size", "256").scales == ((64, 100), (128, 80), (256, 30))
    assert parsed("--preset", "nnst", "--scales", "128:5,256:3").scales == ((128, 5), (256, 3))
    assert parsed("--color", "none").style_loss == "gram:0.5,sliced-wasserstein:0.5"  # no preset: as before
