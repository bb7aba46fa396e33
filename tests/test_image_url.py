"""Images given as http(s) URLs (stylelab.image): downloaded like files, with one-line errors."""

from __future__ import annotations

import http.server
import io
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    TOL,
    assert_one_line_error,
    check_rgb,
    noise_rgb,
)
from PIL import Image

from stylelab import image as si
from stylelab.image import (
    ImageError,
    is_url,
    load_alpha,
    open_image,
    read_metadata,
    save_image,
    to_tensor,
)

# ---------------------------------------------------------------------------------------------- URL inputs


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.routes` {path: (body, send_length)}; /slow answers after a second; anything else is 404."""

    def do_GET(self):
        try:
            if self.path == "/slow.png":
                time.sleep(1.0)
            body, send_length = self.server.routes.get(self.path, (None, True))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            if send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes = {}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def serve(http_server, monkeypatch):
    """serve(path, body) -> the URL of `body` on a local server (proxies from the environment switched off)."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def add(path: str, body: bytes = b"", send_length: bool = True) -> str:
        http_server.routes[path] = (body, send_length)
        return f"http://127.0.0.1:{http_server.server_port}{path}"

    return add


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("s, expected", [
    ("http://example.com/a.png", True), ("https://example.com/a.jpg", True), ("HTTPS://X.ORG/A", True),
    ("ftp://example.com/a.png", False), ("file:///tmp/a.png", False), ("/tmp/http://a.png", False),
    ("http:/a.png", False), ("style.png", False), (Path("http://a.png"), False), (b"http://a.png", False),
])
def test_is_url(s, expected):
    assert is_url(s) is expected


def test_url_loads_like_the_file(serve, tmp_path):
    im = noise_rgb(9, 7)
    url = serve("/noise.png", png_bytes(im))
    path = tmp_path / "noise.png"
    im.save(path)
    t = to_tensor(url, "style image")
    check_rgb(t, 7, 9)
    assert torch.equal(t, to_tensor(path))
    assert open_image(url).size == (9, 7)


def test_url_without_content_length(serve):
    url = serve("/nolength.png", png_bytes(noise_rgb(5, 4)), send_length=False)
    check_rgb(to_tensor(url), 4, 5)


def test_url_alpha_and_metadata(serve, tmp_path):
    t = to_tensor(noise_rgb(6, 4))
    alpha = torch.linspace(0, 1, 24).reshape(1, 1, 4, 6)
    path = save_image(t, tmp_path / "a.png", alpha=alpha, metadata={"k": "v"})
    url = serve("/alpha.png", path.read_bytes())
    assert torch.allclose(load_alpha(url), alpha, atol=TOL / 2)
    assert read_metadata(url) == {"k": "v"}


def test_url_404(serve):
    url = serve("/exists.png", b"x").replace("/exists.png", "/missing.png")
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "cannot download style image from", url, "404")


def test_url_connection_refused():
    with pytest.raises(ImageError) as info:
        open_image("http://127.0.0.1:1/x.png", "style image")
    assert_one_line_error(info, "cannot download style image from http://127.0.0.1:1/x.png: ")


def test_url_timeout(serve, monkeypatch):
    monkeypatch.setattr(si, "DOWNLOAD_TIMEOUT_S", 0.2)
    url = serve("/slow.png", png_bytes(noise_rgb(4, 4)))  # answers after a second, after the 0.2 s timeout
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "cannot download style image", "timed out")


def test_url_not_an_image(serve):
    url = serve("/page.html", b"<html><body>hello</body></html>")
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "style image is not an image file", url)


def test_url_empty(serve):
    url = serve("/empty.png", b"")
    with pytest.raises(ImageError) as info:
        to_tensor(url)
    assert_one_line_error(info, "empty", url)


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "streamed"])
def test_url_too_large(serve, monkeypatch, send_length):
    monkeypatch.setattr(si, "MAX_DOWNLOAD_BYTES", 100)
    url = serve(f"/big{send_length}.png", png_bytes(noise_rgb(20, 20)), send_length)
    with pytest.raises(ImageError) as info:
        to_tensor(url, "style image")
    assert_one_line_error(info, "style image at", "larger than")


def test_url_truncated_image(serve):
    data = png_bytes(noise_rgb(30, 30))
    url = serve("/cut.png", data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        to_tensor(url)
    assert_one_line_error(info, "truncated", url)
