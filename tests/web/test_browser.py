"""stylelab serve end to end in a real headless Chromium (Playwright driving the system's /usr/bin/chromium; no
browser download): upload two images, start at 64 px, see the preview change, cancel, start again, find the
result in the gallery. Skipped when Playwright, uvicorn or Chromium is missing.

STYLELAB_SCREENSHOT=docs/images/web_painting.png also saves a screenshot of the page while it paints (and, beside
it, web_regions.png, web_compare.png, web_form_error.png and web_page.png from the other tests)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from stylelab import samples

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("STYLELAB_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from stylelab.web.app import create_app  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving create_app(data) on 127.0.0.1 in a thread; stop() and start() again on the same data."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        app = create_app(self.data, port=self.port)
        self.srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.srv.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.srv.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.srv.should_exit = True
        self.thread.join(60)


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "data")
    s.start()
    yield s
    s.stop()


def write_png(path: Path, image) -> Path:
    image.save(path)
    return path


def add_inputs(page, content: Path, style: Path) -> None:
    """Upload a content and a style image through the page's file inputs, waiting for their thumbnails."""
    page.set_input_files("#content-file", str(content))
    page.wait_for_selector("#content-thumb:not([hidden])")
    page.set_input_files("#style-file", str(style))
    page.wait_for_selector("#styles li img")


def open_page(p, server: Server):
    """Chromium on the server's page, its form rendered (from /api/schema); (browser, page, the page's JS errors
    and the files it asked for in vain, such as a missing favicon.ico)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "/api/" not in r.url
            else None)
    page.goto(server.url)
    page.wait_for_selector("#f-size")
    return browser, page, errors


@pytest.mark.slow
def test_paint_watch_steer_cancel_start_again_and_find_it_after_a_restart(server: Server, tmp_path: Path) -> None:
    content = write_png(tmp_path / "content.png", samples.landscape(64, 48))
    style = write_png(tmp_path / "style.png", samples.swirls(64, 64, seed=1))
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, server)
        add_inputs(page, content, style)
        page.fill("#f-size", "64")
        page.fill("#f-steps", "300")
        page.click("#form details summary")  # "More settings"
        page.fill("#f-device", "cpu")
        page.click("#start")

        preview = page.locator("#preview")
        page.wait_for_function("document.getElementById('preview').src.includes('preview?n=')", timeout=120_000)
        first = preview.screenshot()
        page.wait_for_function("/n=([3-9]|\\d\\d)/.test(document.getElementById('preview').src)", timeout=120_000)
        page.wait_for_function("document.getElementById('preview').complete")
        later = preview.screenshot()
        assert later != first, "the preview did not change while the job ran"
        assert "step" in page.inner_text("#stats") and "ETA" in page.inner_text("#stats")
        if os.environ.get("STYLELAB_SCREENSHOT"):
            page.evaluate("window.scrollTo(0, 0)")  # filling the device field scrolled the form into view
            page.screenshot(path=os.environ["STYLELAB_SCREENSHOT"], full_page=False)

        page.fill("#f-style_weight", "50")  # edit and continue: stronger style, from the current image
        page.click("#continue")
        page.wait_for_function("/job 2 · step [1-9]/.test(document.getElementById('stats').textContent)",
                               timeout=120_000)
        page.wait_for_selector(".card[data-state=cancelled]")  # job 1, stopped where job 2 went on
        assert "style_weight=50" in page.inner_text("#queue")

        page.click("#cancel")
        page.wait_for_function("document.getElementById('stats').textContent.includes('job 2 cancelled')",
                               timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.card[data-state=cancelled]').length == 2")

        page.fill("#f-steps", "3")
        page.click("#start")
        page.wait_for_selector(".card[data-state=done] img", timeout=180_000)
        card = page.locator(".card[data-state=done]")
        assert card.count() == 1 and "steps=3" in card.inner_text() and "style_weight=50" in card.inner_text()
        assert page.locator("#error").is_hidden(), page.inner_text("#error")

        server.stop()  # a new server on the same data: the gallery and the result's settings are still there
        server.start()
        page.reload()
        page.wait_for_selector(".card[data-state=done] img")
        assert page.locator(".card").count() == 3
        page.click(".card[data-state=done] button:text('Settings')")
        page.wait_for_selector("#details[open]")
        assert '"style_weight": 50,' in page.inner_text("#details-text")  # JSON.stringify(50.0) is 50
        assert not errors, errors
        browser.close()


@pytest.mark.slow
def test_the_quick_feed_forward_preview_shows_with_its_label_until_the_first_step(server: Server, optimiser_held,
                                                                                  tmp_path: Path) -> None:
    content = write_png(tmp_path / "content.png", samples.landscape(128, 96))
    style = write_png(tmp_path / "style.png", samples.swirls(96, 96, seed=1))
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, server)
        add_inputs(page, content, style)
        page.fill("#f-size", "96")
        page.fill("#f-steps", "3")
        page.click("#form details summary")
        page.fill("#f-device", "cpu")
        page.click("#start")  # the optimiser is held: what shows is all from before its first step
        page.wait_for_selector("#preview-note:not([hidden])", timeout=60_000)
        page.wait_for_function("document.getElementById('preview').complete")
        assert page.inner_text("#preview-note") == "Quick preview (feed-forward network) — refining…"
        assert page.get_attribute("#preview", "src").endswith("/api/jobs/1/preview?n=1")
        assert page.locator("#preview").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [96, 72]
        assert page.inner_text("#stats") == "job 1: preparing"  # no step reported yet
        if os.environ.get("STYLELAB_SCREENSHOT"):
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(Path(os.environ["STYLELAB_SCREENSHOT"]).with_name("web_quick_preview.png")))

        optimiser_held.set()  # the optimiser's first preview (or, past it already, the result) replaces it
        page.wait_for_function("/n=[2-9]|result/.test(document.getElementById('preview').src)", timeout=120_000)
        assert page.locator("#preview-note").is_hidden()  # and its label is gone
        page.wait_for_selector(".card[data-state=done] img", timeout=120_000)
        assert page.locator("#preview-note").is_hidden() and "job 1 done" in page.inner_text("#stats")
        assert page.locator("#error").is_hidden(), page.inner_text("#error")
        assert not errors, errors
        browser.close()


@pytest.mark.slow
def test_regions_from_the_style_list_and_a_compare_report_from_a_result(server: Server, tmp_path: Path) -> None:
    from PIL import Image

    content, s1, s2, mask, other = (tmp_path / n for n in ("content.png", "s1.png", "s2.png", "left.png", "right.png"))
    samples.landscape(48, 36).save(content)
    samples.swirls(48, 48, seed=1).save(s1)
    samples.swirls(48, 48, seed=2).rotate(90).save(s2)
    left = Image.new("L", (48, 36), 0)
    left.paste(255, (0, 0, 24, 36))
    left.save(mask)
    Image.eval(left, lambda v: 255 - v).save(other)
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, server)
        page.set_input_files("#content-file", str(content))
        page.wait_for_selector("#content-thumb:not([hidden])")
        page.set_input_files("#style-file", [str(s1), str(s2)])
        page.wait_for_function("document.querySelectorAll('#styles > li').length == 2")
        page.locator("#styles > li").nth(0).locator(".mask-file-mask").set_input_files(str(mask))
        page.wait_for_selector("#styles > li:nth-child(1) img.mask-thumb")
        page.locator("#styles > li").nth(1).locator(".mask-file-mask").set_input_files(str(other))
        page.wait_for_selector("#styles > li:nth-child(2) img.mask-thumb")
        if os.environ.get("STYLELAB_SCREENSHOT"):
            page.locator("section.inputs").screenshot(
                path=str(Path(os.environ["STYLELAB_SCREENSHOT"]).with_name("web_regions.png")))
        page.fill("#f-size", "48")
        page.fill("#f-steps", "3")
        page.select_option("#f-style_loss", "gram") if page.locator("select#f-style_loss").count() \
            else page.fill("#f-style_loss", "gram")
        page.set_input_files("#init-file", str(s2))  # start from an image of one's own (--init PATH)
        page.wait_for_selector("#init-thumb:not([hidden])")
        assert page.locator("#f-init").is_disabled()
        page.click("#form details summary")
        page.fill("#f-device", "cpu")
        page.click("#start")
        page.wait_for_selector(".card[data-state=done] img", timeout=180_000)
        assert page.locator("#error").is_hidden(), page.inner_text("#error")
        page.click(".card[data-state=done] button:text('Settings')")
        page.wait_for_selector("#details[open]")
        record = page.inner_text("#details-text")
        assert record.count('"content_mask"') == 2 and '/uploads/' in record.split('"init":')[1].split(",")[0]
        page.click("#details button")

        page.click(".card[data-state=done] button:text('Compare')")
        page.wait_for_selector("#compare[open]")
        page.fill("#compare-losses", "gram,sliced-wasserstein")
        page.click("#compare-queue")
        page.wait_for_function("document.getElementById('compare-status').textContent.includes('queued jobs #2')")
        page.wait_for_function("document.querySelectorAll('.card[data-state=done] img').length == 2",
                               timeout=180_000)
        with page.expect_popup() as popup:
            page.click("#compare-report")
        report = popup.value
        report.wait_for_selector("table")
        report.wait_for_function("document.querySelector('img').complete && document.querySelector('img').naturalWidth")
        rows = report.locator("table tr").all_inner_texts()
        assert len(rows) == 4 and rows[2].startswith("#1 gram") and rows[3].startswith("#2 sliced-wasserstein")
        if os.environ.get("STYLELAB_SCREENSHOT"):
            report.screenshot(path=str(Path(os.environ["STYLELAB_SCREENSHOT"]).with_name("web_compare.png")))
        assert page.locator("#error").is_hidden(), page.inner_text("#error")
        assert not errors, errors
        browser.close()


def plot_labels(page, points: list[dict] | None = None) -> list[str]:
    """The texts the loss plot draws (tick labels and legend), of `points` or of the followed job's."""
    return page.evaluate("""(points) => {
        const seen = [], fillText = CanvasRenderingContext2D.prototype.fillText;
        CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
            seen.push(String(text));
            return fillText.call(this, text, ...rest);
        };
        const kept = state.points;
        if (points) state.points = points;
        try { drawPlot(); } finally {
            CanvasRenderingContext2D.prototype.fillText = fillText;
            state.points = kept;
        }
        return seen;
    }""", points)


def ticks(labels: list[str]) -> list[str]:
    return [t for t in labels if t not in ("content", "style", "tv")]


@pytest.mark.slow
def test_the_form_is_kept_a_refused_setting_is_marked_and_the_plot_has_round_ticks(server: Server,
                                                                                    tmp_path: Path) -> None:
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, server)
        page.fill("#f-size", "abc")
        page.fill("#f-steps", "7")
        page.click("#form details summary")
        page.fill("#f-device", "cpu")
        page.select_option("#f-color", "transfer")
        page.reload()  # what was typed comes back
        page.wait_for_selector("#f-size")
        assert [page.input_value(f"#f-{n}") for n in ("size", "steps", "device", "color")] == \
            ["abc", "7", "cpu", "transfer"]

        page.set_input_files("#style-file", str(write_png(tmp_path / "s.png", samples.swirls(48, 48))))
        page.wait_for_selector("#styles li img")
        page.check("#texture")
        page.click("#start")  # size "abc": refused, and the field marked
        page.wait_for_selector("#f-size[aria-invalid=true]")
        assert page.inner_text("#error") == "Size: must be a whole number, got 'abc'"
        size = page.locator("#f-size")
        assert page.inner_text(f"#{size.get_attribute('aria-describedby')}") == "must be a whole number, got 'abc'"
        assert size.evaluate("e => getComputedStyle(e).outlineColor") == "rgb(176, 0, 32)"  # --bad
        assert size.evaluate("e => e === document.activeElement")
        if os.environ.get("STYLELAB_SCREENSHOT"):
            page.locator("section.settings").screenshot(
                path=str(Path(os.environ["STYLELAB_SCREENSHOT"]).with_name("web_form_error.png")))
        page.fill("#f-size", "48")  # an edit clears the mark
        assert size.get_attribute("aria-invalid") is None and page.locator(".field-error").count() == 0
        page.click("#form details summary")  # a setting under "More settings", folded again
        page.fill("#f-tol", "-1")
        page.click("#form details summary")
        page.click("#start")
        page.wait_for_selector("#f-tol[aria-invalid=true]")
        assert page.locator("#form details").evaluate("d => d.open")  # unfolded to show the marked field
        assert page.inner_text("#error").startswith("Tol: must be a finite number >= 0")

        # the loss plot's y axis: round values at powers of ten, or 1-2-5 steps within a decade
        wide = [{"content": 1.6 * 0.5**i, "style": 0.3 * 0.1**i, "tv": 3e-6 * 10**i} for i in range(5)]
        assert ticks(plot_labels(page, wide)) == ["1e-6", "1e-4", "0.01", "1"]
        assert ticks(plot_labels(page, [{"content": 0.02 * 2**i, "style": 1.3} for i in range(5)])) == \
            ["0.01", "0.1", "1", "10"]
        narrow = [{"content": 0.31 + 0.01 * i, "style": 0.9 - 0.1 * i} for i in range(5)]
        assert ticks(plot_labels(page, narrow)) == ["0.2", "0.5", "1"]
        assert ticks(plot_labels(page, [{"content": 1.0, "style": 1.0}])) == ["0.5", "1", "2"]
        assert not errors, errors
        browser.close()


@pytest.mark.slow
def test_a_preset_shows_its_values_and_what_the_user_changes_is_sent(server: Server) -> None:
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, server)
        page.click("#form details summary")
        page.fill("#f-steps", "7")
        page.select_option("#f-preset", "nnst")  # its values show in the fields; the user's own value stays
        assert [page.input_value(f"#f-{n}") for n in ("style_loss", "style_weight", "color", "steps")] == \
            ["nn", "30", "recolor", "7"]
        assert page.evaluate("readSettings()") == {"preset": "nnst", "steps": "7"}
        page.select_option("#f-color", "none")  # stylelab's default, but not the preset's: sent
        assert page.evaluate("readSettings()") == {"preset": "nnst", "steps": "7", "color": "none"}
        page.select_option("#f-preset", "")  # the preset's values go, the user's stay
        assert [page.input_value(f"#f-{n}") for n in ("style_loss", "style_weight", "color", "steps")] == \
            ["gram:0.5,sliced-wasserstein:0.5", "10", "none", "7"]
        assert page.evaluate("readSettings()") == {"steps": "7"}
        page.evaluate("applySettings({preset: 'nnst'})")  # a job's settings back in the form (run again)
        assert page.input_value("#f-color") == "recolor" and page.evaluate("readSettings()") == {"preset": "nnst"}
        assert not errors, errors
        browser.close()


@pytest.mark.slow
def test_cancel_answers_at_once_the_preview_fills_the_stage_and_the_cancelled_job_keeps_its_image(
        server: Server, tmp_path: Path) -> None:
    content = write_png(tmp_path / "content.png", samples.landscape(64, 48))
    style = write_png(tmp_path / "style.png", samples.swirls(64, 64, seed=1))
    with sync_api.sync_playwright() as p:
        browser, page, errors = open_page(p, server)
        add_inputs(page, content, style)
        page.fill("#f-size", "64")
        page.fill("#f-steps", "400")
        page.click("#form details summary")
        page.fill("#f-device", "cpu")
        page.click("#start")
        page.wait_for_function("/n=([3-9]|\\d\\d)/.test(document.getElementById('preview').src)", timeout=120_000)
        page.wait_for_function("document.getElementById('preview').complete")

        # a 64 x 48 preview is scaled up to the stage, not shown at 64 px in a large black area
        box = page.evaluate("""() => {
            const img = document.getElementById('preview'), stage = img.parentElement, r = img.getBoundingClientRect();
            const style = getComputedStyle(img);
            return {w: r.width, h: r.height, sw: stage.clientWidth, sh: stage.clientHeight, nw: img.naturalWidth,
                    fit: style.objectFit, rendering: style.imageRendering};
        }""")
        assert box["nw"] == 64 and box["sw"] > 400 and box["sh"] > 200
        assert abs(box["w"] - box["sw"]) <= 1 and abs(box["h"] - box["sh"]) <= 1, box
        assert (box["fit"], box["rendering"]) == ("contain", "pixelated")
        labels = ticks(plot_labels(page))  # the plot of the job's own losses
        assert labels and all(re.fullmatch(r"[125](e-?\d+)?|0\.0{0,2}[125]|[125]0{0,3}", t) for t in labels), labels
        if os.environ.get("STYLELAB_SCREENSHOT"):
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(Path(os.environ["STYLELAB_SCREENSHOT"]).with_name("web_page.png")))

        # Cancel shows at once, before the server answers and long before the step ends
        disabled, said = page.evaluate("""() => {
            const cancel = document.getElementById('cancel');
            cancel.click();
            return [cancel.disabled, document.getElementById('stats').textContent];
        }""")
        assert disabled and said.startswith("job 1: stopping after this step")
        page.wait_for_selector(".card[data-state=cancelled] img", timeout=60_000)  # it kept its last image
        assert page.locator("#cancel").is_disabled() and "job 1 cancelled" in page.inner_text("#stats")
        img = page.locator(".card[data-state=cancelled] img")
        img.evaluate("i => i.complete || new Promise(ok => i.onload = ok)")
        assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [64, 48]

        # Explain of that image: busy at once, its tab open at the click, the report in it when ready
        with page.expect_popup() as popup:
            busy = page.evaluate("""() => {
                const b = document.querySelector('.card[data-state=cancelled] button.explain');
                b.click();
                return [b.disabled, b.textContent];
            }""")
        assert busy == [True, "Building the report…"]
        report = popup.value
        report.wait_for_url("**/api/jobs/1/report/index.html", timeout=180_000)
        report.wait_for_selector("img")
        page.wait_for_function("!document.querySelector('.card[data-state=cancelled] button.explain').disabled")
        assert page.locator("#error").is_hidden(), page.inner_text("#error")
        assert not errors, errors
        browser.close()
