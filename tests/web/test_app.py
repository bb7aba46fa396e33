"""stylelab serve: the web API through FastAPI's TestClient (submit, progress events, cancel, queue order, history
across a restart, upload limits, token and Host checks). Small images, a few steps, the real VGG19."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import bomb_png, noise_rgb
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")  # python-multipart >= 0.0.13 (FastAPI needs it for uploads)
from fastapi.testclient import TestClient

from stylelab import cli, samples
from stylelab.engine.provenance import PROVENANCE_KEY
from stylelab.web.app import create_app
from stylelab.web.routes import ROUTERS

BASE = "http://127.0.0.1"
FAST = {"size": 48, "steps": 3, "device": "cpu"}


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def client(tmp_path: Path):
    with TestClient(create_app(tmp_path / "data"), base_url=BASE) as c:
        yield c


def upload(c: TestClient, data: bytes, name: str = "x.png") -> str:
    r = c.post("/api/uploads", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return r.json()["sha256"]


def inputs(c: TestClient) -> tuple[str, str]:
    return upload(c, png(samples.landscape(64, 48)), "c.png"), upload(c, png(samples.swirls(48, 48, seed=1)), "s.png")


def submit(c: TestClient, content: str | None, styles: list[str], **settings) -> int:
    r = c.post("/api/jobs", json={"content": content, "styles": styles, "settings": {**FAST, **settings}})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def wait(c: TestClient, job: int, states=("done", "failed", "cancelled"), timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = c.get(f"/api/jobs/{job}").json()
        if row["state"] in states:
            return row
        time.sleep(0.05)
    raise AssertionError(f"job {job} still {row['state']}")


def events(c: TestClient, job: int) -> list[dict]:
    out = []
    with c.stream("GET", f"/api/jobs/{job}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def test_a_job_in_tiles_reports_its_sweeps_and_tiles(client: TestClient) -> None:
    """A step computed in tiles takes minutes at print size: the page hears which sweep and tile it is at (at most
    twice a second, and at the end of every sweep), with the time left in the step."""
    c = upload(client, png(samples.landscape(160, 120)), "c.png")
    s = upload(client, png(samples.swirls(64, 64, seed=1)), "s.png")
    job = submit(client, c, [s], size=160, steps=2, optimizer="adam", no_multiscale=True, tile=64)
    got = events(client, job)
    assert got[-1] == {"type": "end", "state": "done", "error": None}
    tiles = [e for e in got if e["type"] == "tile"]
    # 160 x 120 px: 3 x 2 cores of 64 px; the first step sweeps four times (its normalisers), the second three,
    # and the scale's final report (its values) three
    ends = [(e["step"], e["sweep"], e["sweeps"]) for e in tiles if e["phase"] == "step" and e["tile"] == e["tiles"]]
    assert ends == [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4), (1, 1, 3), (1, 2, 3), (1, 3, 3),
                    (2, 1, 3), (2, 2, 3), (2, 3, 3)]
    assert all(e["tiles"] == 6 and e["total"] == 2 for e in tiles if e["phase"] == "step")
    assert tiles[-1]["eta"] == 0 and all(e["eta"] is None or e["eta"] >= 0 for e in tiles)
    assert client.get(f"/api/jobs/{job}/provenance").json()["config"]["tile"] == 64


def test_schema_is_the_run_parser_and_a_refused_setting_names_its_field(client: TestClient) -> None:
    fields = {f["name"]: f for f in client.get("/api/schema").json()["fields"]}
    run = cli.build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = {a.dest: a for a in run._actions if a.option_strings}
    for name, f in fields.items():
        assert f["default"] == flags[name].default and f["help"] == flags[name].help
    assert {"size", "steps", "style_weight", "style_loss", "color", "precision", "scales"} <= set(fields)
    assert not {"output", "checkpoint", "weights", "mask", "preview"} & set(fields)  # server paths: not from a request
    assert (fields["size"]["label"], fields["style_weight"]["label"]) == ("Size", "Style weight")
    c, s = inputs(client)

    def refused(settings: dict, styles: list[str] = [s]) -> dict:  # noqa: B006 (never mutated)
        r = client.post("/api/jobs", json={"content": c, "styles": styles, "settings": settings})
        assert r.status_code == 400, r.text
        return r.json()

    # the error names the field as the form labels it, and says which field (for the page to mark it)
    assert refused({"size": "abc"}) == {"error": "Size: must be a whole number, got 'abc'", "field": "size"}
    assert refused({"steps": "many"}) == {"error": "Steps: must be a whole number, got 'many'", "field": "steps"}
    assert refused({"style_weight": "lots"}) == {"error": "Style weight: must be a number, got 'lots'",
                                                 "field": "style_weight"}
    assert refused({"size": 4}) == {"error": "Size: must be an integer in [16, 8192] px, got 4", "field": "size"}
    assert refused({"bit_depth": 12}) == {"error": "Bit depth: must be one of 8, 16, got '12'", "field": "bit_depth"}
    got = refused({"style_layers": "relu9_1"})  # a message of the CLI's checks naming the flag
    assert got["field"] == "style_layers" and got["error"].startswith("Style layers: unknown layer 'relu9_1'")
    got = refused({"steps": 5, "style_loss": "gram:x"})  # one naming no setting: the one refused on its own
    assert got == {"error": "Style loss: weight of gram must be a number, got 'x'", "field": "style_loss"}
    assert refused({"init": "/etc/passwd"})["field"] == "init"
    assert refused({"style_blend": "1,2"}) == {"error": "Style blend: 2 weights for 1 style image",
                                               "field": "style_blend"}
    assert refused({}, styles=[]) == {"error": "add at least one style image"}  # about no field: no "field"
    assert client.get("/api/jobs").json()["jobs"] == []


def test_submit_streams_progress_and_previews_and_the_result_has_its_settings(client: TestClient) -> None:
    c, s = inputs(client)
    s2 = upload(client, png(samples.swirls(48, 48, seed=2)), "s2.png")
    job = submit(client, c, [s, s2], style_blend="3,1", style_weight=5)
    got = events(client, job)
    steps = [e for e in got if e["type"] == "step" and not e["final"]]
    assert [e["step"] for e in steps] == [1, 2, 3] and all(e["total"] == 3 for e in steps)
    assert {"content", "style", "tv"} <= set(steps[0]["terms"]) and steps[-1]["eta"] == 0
    assert any(e["type"] == "preview" for e in got)
    assert got[-1] == {"type": "end", "state": "done", "error": None}
    preview = client.get(f"/api/jobs/{job}/preview")
    assert preview.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(preview.content)).size == (48, 36)
    result = client.get(f"/api/jobs/{job}/result?download=1")
    assert "attachment" in result.headers["content-disposition"]
    record = json.loads(Image.open(io.BytesIO(result.content)).text[PROVENANCE_KEY])
    assert record["command"] == "run" and len(record["styles"]) == 2
    assert record["config"]["style_blend"] == [3.0, 1.0] and record["config"]["style_weight"] == 5.0
    assert client.get(f"/api/jobs/{job}/provenance").json()["config"]["steps"] == 3
    job_row = client.get(f"/api/jobs/{job}").json()
    assert job_row["steps"] == 3 and job_row["losses"]["style"] > 0


def test_the_feed_forward_picture_is_the_first_preview_before_the_first_step(client: TestClient,
                                                                             optimiser_held) -> None:
    runner = client.app.state.runner  # type: ignore[attr-defined]
    c, s = inputs(client)
    s2 = upload(client, png(samples.swirls(48, 48, seed=2)), "s2.png")
    job = submit(client, c, [s, s2], style_blend="3,1")
    deadline = time.monotonic() + 60
    while (preview := client.get(f"/api/jobs/{job}/preview")).status_code == 404:  # the optimiser is held
        assert time.monotonic() < deadline, "no preview before the first step"
        time.sleep(0.05)
    assert preview.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(preview.content)).size == (48, 36)  # the output's size
    so_far, _ = runner.events(job, 0)
    assert [e["type"] for e in so_far] == ["state", "state", "preview"] and so_far[-1]["fast"] is True
    optimiser_held.set()
    got = events(client, job)
    assert got[-1]["state"] == "done"
    previews = [e for e in got if e["type"] == "preview"]
    first_step = next(k for k, e in enumerate(got) if e["type"] == "step")
    assert got.index(previews[0]) < first_step and [e["fast"] for e in previews] == [True] + [False] * len(previews[1:])

    # none for a texture (no content image), nor for a job that goes on from an image (that image is on show)
    texture = submit(client, None, [s])
    again = client.post(f"/api/jobs/{job}/continue").json()["id"]
    for other in (texture, again):
        got = events(client, other)
        assert got[-1]["state"] == "done" and not any(e.get("fast") for e in got), got


def test_without_the_feed_forward_model_a_job_runs_and_has_no_fast_preview(client: TestClient,
                                                                           no_fast_model) -> None:
    c, s = inputs(client)
    got = events(client, submit(client, c, [s]))
    assert got[-1] == {"type": "end", "state": "done", "error": None}
    previews = [e for e in got if e["type"] == "preview"]
    assert previews and not any(e["fast"] for e in previews)
    assert got.index(previews[0]) > next(k for k, e in enumerate(got) if e["type"] == "step")


def test_a_body_of_the_wrong_shape_is_a_one_line_400_saying_what_is_wrong(client: TestClient) -> None:
    c, s = inputs(client)
    bad = [
        ({"content": 5, "styles": [s]}, "content must be the id of an upload, or null for a texture"),
        ({"content": c}, "styles must be a list of upload ids"),
        ({"content": c, "styles": s}, "styles must be a list of upload ids"),
        ({"content": c, "styles": [s, "x"]}, "styles must be a list of upload ids"),
        ({"content": c, "styles": [s], "settings": "size=64"}, "settings must be an object of {setting: value}"),
        ({"content": c, "styles": [s], "masks": [{"content_mask": c, "style": 1, "x": 1}]},
         "mask 1 must be an object with content_mask, style and an optional style_mask"),
        ({"content": c, "styles": [s], "masks": [{"content_mask": c, "style": True}]},
         "mask 1: style must be the number of a style image, from 1"),
        ({"content": c, "styles": [s], "masks": [{"content_mask": c, "style": 1, "style_mask": "s.png"}]},
         "mask 1: style_mask must be the id of an upload, or null"),
        ([c, s], "the request's body must be a JSON object"),
    ]
    for body, message in bad:
        r = client.post("/api/jobs", json=body)
        assert (r.status_code, r.json()) == (400, {"error": message}), body
    r = client.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (400, {"error": "the request's body must be a JSON object"})
    r = client.post("/api/jobs/1/continue", json={"settings": ["steps", 2]})
    assert (r.status_code, r.json()) == (400, {"error": "settings must be an object of {setting: value}"})
    r = client.post("/api/jobs/1/compare", json={"losses": ["gram"]})
    assert (r.status_code, r.json()) == (400, {"error": "losses must be a comma list of style losses, or 'all'"})
    r = client.get("/api/jobs/1/events?since=soon")  # a query parameter: FastAPI's 422, in one line
    assert r.status_code == 422 and r.json()["error"].startswith("bad request: query.since:")
    assert client.get("/api/jobs").json()["jobs"] == []


def test_texture_has_no_content(client: TestClient) -> None:
    _, s = inputs(client)
    job = submit(client, None, [s], size=32, steps=2)
    assert wait(client, job)["state"] == "done"
    record = client.get(f"/api/jobs/{job}/provenance").json()
    assert record["command"] == "texture" and record["size"] == [32, 32]


@pytest.mark.slow
def test_queue_runs_in_order_and_cancel_stops_between_steps(client: TestClient) -> None:
    c, s = inputs(client)
    first = submit(client, c, [s], steps=400)
    second = submit(client, c, [s], steps=2)
    third = submit(client, c, [s], steps=2)
    assert client.get("/api/jobs").json()["queue"][-2:] == [second, third]
    wait(client, first, ("running",))
    assert client.get(f"/api/jobs/{second}").json()["state"] == "queued"  # one job at a time
    assert client.post(f"/api/jobs/{third}/cancel").json()["state"] == "cancelled"  # a queued job: never runs
    with client.stream("GET", f"/api/jobs/{first}/events") as r:  # cancel once steps are coming in
        for line in r.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "step":
                break
    client.post(f"/api/jobs/{first}/cancel")
    row = wait(client, first)
    assert row["state"] == "cancelled" and 1 <= row["steps"] < 400 and row["result"] == f"{first}.png"
    assert wait(client, second)["state"] == "done"
    assert client.get(f"/api/jobs/{third}").json()["steps"] == 0
    assert client.get(f"/api/jobs/{second}").json()["started"] >= row["finished"]


def test_edit_and_continue_starts_from_the_current_image_with_new_settings(client: TestClient) -> None:
    c, s = inputs(client)
    job = submit(client, c, [s], steps=2)
    wait(client, job)
    new = client.post(f"/api/jobs/{job}/continue", json={"settings": {**FAST, "steps": 2, "style_weight": 50}})
    assert new.status_code == 200, new.text
    row = wait(client, new.json()["id"])
    assert row["state"] == "done" and row["parent"] == job
    record = client.get(f"/api/jobs/{row['id']}/provenance").json()
    assert record["config"]["style_weight"] == 50.0
    init = Path(record["config"]["init"])  # the first job's result, stored as an upload under its hash
    assert init.parent.name == "uploads" and init.is_file()
    first = Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/result").content)).convert("RGB")
    assert Image.open(init).convert("RGB").tobytes() == first.tobytes()
    restarted = client.post(f"/api/jobs/{job}/restart", json={}).json()
    assert wait(client, restarted["id"])["state"] == "done"
    assert client.get(f"/api/jobs/{restarted['id']}/provenance").json()["config"]["init"] == "content"


@pytest.mark.slow
def test_a_new_server_on_the_same_data_keeps_the_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with TestClient(create_app(data), base_url=BASE) as client:
        c, s = inputs(client)
        job = submit(client, c, [s])
        wait(client, job)
        deleted = submit(client, c, [s], steps=1)
        wait(client, deleted)
        assert client.delete(f"/api/jobs/{deleted}").status_code == 200
    with TestClient(create_app(data), base_url=BASE) as client:
        jobs = client.get("/api/jobs").json()["jobs"]
        assert [j["id"] for j in jobs] == [job] and jobs[0]["state"] == "done"
        assert client.get(f"/api/jobs/{job}/provenance").json()["config"]["size"] == 48
        assert client.get(f"/api/jobs/{deleted}").status_code == 404
        assert {u["sha256"] for u in client.get("/api/uploads").json()} == {c, s}
        assert events(client, job) == [{"type": "end", "state": "done", "error": None}]
    assert sorted(p.name for p in (data / "results").iterdir()) == [f"{job}.png"]


def test_bad_uploads_are_rejected_and_nothing_is_stored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with TestClient(create_app(data, max_upload_bytes=20_000), base_url=BASE) as client:
        r = client.post("/api/uploads", files={"file": ("notes.png", b"this is not an image", "image/png")})
        assert r.status_code == 415 and "not an image file" in r.json()["error"]
        bomb = bomb_png(tmp_path / "bomb.png").read_bytes()
        r = client.post("/api/uploads", files={"file": ("bomb.png", bomb, "image/png")})
        assert r.status_code == 413 and "too large" in r.json()["error"]
        r = client.post("/api/uploads", files={"file": ("big.png", png(noise_rgb(200, 200)), "image/png")})
        assert r.status_code == 413 and "larger than the upload limit" in r.json()["error"]
        r = client.post("/api/uploads", files={"file": ("../../etc/evil.png", b"", "image/png")})
        assert r.status_code == 400 and r.json()["error"] == "evil.png is an empty file"
        r = client.post("/api/jobs", json={"content": "0" * 64, "styles": ["1" * 64]})
        assert r.status_code == 404 and "traceback" not in r.text.lower()
        assert client.get("/api/uploads").json() == []
    assert list((data / "uploads").iterdir()) == []
    with TestClient(create_app(data, max_upload_pixels=1000), base_url=BASE) as client:
        r = client.post("/api/uploads", files={"file": ("s.png", png(noise_rgb(40, 40)), "image/png")})
        assert r.status_code == 413 and "40x40 px" in r.json()["error"]
    assert list((data / "uploads").iterdir()) == []


def test_token_and_host_checks(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "a", token="s3cret-token"), base_url=BASE) as client:
        assert client.get("/api/schema").status_code == 401
        assert client.get("/api/schema?token=wrong-token").status_code == 401
        assert client.get("/", headers={"X-Stylelab-Token": "s3cret-token"}).status_code == 200
        assert client.get("/api/schema?token=s3cret-token").status_code == 200
        assert client.get("/api/jobs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    with TestClient(create_app(tmp_path / "b", port=8123), base_url=BASE) as client:
        assert client.get("/").status_code == 200
        for host in ("localhost:8123", "127.0.0.1", "[::1]:8123"):
            assert client.get("/api/schema", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example:8123", "evil.example", "localhost:9999", "127.0.0.1.evil.example"):
            r = client.get("/api/schema", headers={"Host": host})
            assert r.status_code == 421 and "is not this server" in r.json()["error"], host
    with TestClient(create_app(tmp_path / "c", hosts=["studio.lan"]), base_url="http://studio.lan") as client:
        assert client.get("/api/schema").status_code == 200


def test_page_and_its_files_are_served_and_load_nothing_from_the_network(client: TestClient) -> None:
    page = client.get("/").text
    assert "<script" in page
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.text) > 500
        page += r.text
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert client.get("/static/../runner.py").status_code == 404
    icon = client.get("/favicon.ico")  # asked for by browsers on every page load
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg") and 'rel="icon" href="static/favicon.svg"' in page


def test_serve_command_binds_loopback_and_makes_a_token_for_other_hosts(tmp_path: Path, monkeypatch, capsys) -> None:
    import uvicorn

    started: list[tuple] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.append((app, host, port)))
    assert cli.main(["serve", "--data", str(tmp_path / "d"), "--port", "0"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err
    assert cli.main(["serve", "--data", str(tmp_path / "d"), "--port", "8765"]) == 0
    app, host, port = started.pop()
    assert (host, port) == ("127.0.0.1", 8765) and "http://localhost:8765/" in capsys.readouterr().err
    app.state.runner.stop()
    assert cli.main(["serve", "--data", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "8766"]) == 0
    err = capsys.readouterr().err
    app, host, _ = started.pop()
    token = err.split("?token=")[1].split()[0]
    assert host == "0.0.0.0" and len(token) >= 16
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/api/schema").status_code == 401
        assert client.get(f"/api/schema?token={token}").status_code == 200
    (tmp_path / "file").write_text("x")
    assert cli.main(["serve", "--data", str(tmp_path / "file")]) == 2
    assert "--data is a file" in capsys.readouterr().err


def test_an_unexpected_failure_is_a_json_message_without_a_traceback(tmp_path: Path) -> None:
    app = create_app(tmp_path / "data")

    def broken() -> list:
        raise KeyError("secret internals")

    app.state.runner.jobs = broken
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        r = client.get("/api/jobs")
        assert r.status_code == 500 and r.json() == {"error": "internal error (KeyError)"}
        assert client.get("/api/jobs/999").json() == {"error": "no job 999"}
        assert client.get("/api/jobs/abc").status_code == 422


def test_explain_report_of_a_result(client: TestClient) -> None:
    c, s = inputs(client)
    job = submit(client, c, [s], steps=1)
    assert client.post(f"/api/jobs/{job}/explain").status_code == 409  # not finished yet, or no result
    wait(client, job)
    r = client.post(f"/api/jobs/{job}/explain")
    assert r.status_code == 200, r.text
    page = client.get(r.json()["report"])
    assert page.status_code == 200 and "<html" in page.text.lower()
    figures = re.findall(r"src=['\"]([\w-]+\.png)['\"]", page.text)
    assert figures and client.get(f"/api/jobs/{job}/report/{figures[0]}").headers["content-type"] == "image/png"
    assert client.get(f"/api/jobs/{job}/report/..%2F{job}.png").status_code == 404
    assert client.get(f"/api/jobs/{job}/report/missing.png").status_code == 404


def test_token_cookie_lets_the_pages_relative_links_through(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "a", token="s3cret-token"), base_url=BASE) as client:
        assert client.get("/?token=s3cret-token").status_code == 200
        assert client.get("/api/schema").status_code == 200  # the cookie set by the first request
        client.cookies.clear()
        assert client.get("/api/schema").status_code == 401


def test_a_body_over_the_limit_is_cut_off_while_it_arrives(tmp_path: Path) -> None:
    data = tmp_path / "data"
    body = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" + b"\0" * 300_000
    with TestClient(create_app(data, max_upload_bytes=20_000), base_url=BASE) as client:
        for headers in ({}, {"content-length": str(len(body))}):  # streamed (chunked), or declared up front
            r = client.post("/api/uploads", content=iter([body[:100_000], body[100_000:]]),
                            headers={"content-type": "multipart/form-data; boundary=x", **headers})
            assert r.status_code == 413, r.text  # from the middleware, before the parser saw it all:
            assert r.json()["error"] == "the request is larger than the upload limit (19.5 kB)"
        assert client.get("/api/uploads").json() == []
    assert list((data / "uploads").iterdir()) == []


def test_serve_without_the_web_extra_says_what_to_install(monkeypatch, capsys, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if stylelab[web] were not installed
    assert cli.main(["serve", "--data", str(tmp_path)]) == 2
    assert "pip install 'stylelab[web]'" in capsys.readouterr().err


def cells(page: str) -> dict[str, list[str]]:
    """The compare report's table: output label -> its cells (content distance, one per loss, s/step)."""
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        tds = [re.sub(r"</?b>", "", td) for td in re.findall(r"<td>(.*?)</td>", row)]
        if tds:
            rows[tds[0]] = tds[1:]
    return rows


def test_compare_report_of_a_result(client: TestClient) -> None:
    c, s = inputs(client)
    job = submit(client, c, [s], style_loss="gram", steps=6)
    assert client.post(f"/api/jobs/{job}/compare", json={"losses": "gram"}).status_code == 409  # not done yet
    wait(client, job)
    r = client.post(f"/api/jobs/{job}/compare", json={"losses": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["error"]
    assert client.post(f"/api/jobs/{job}/compare-report").status_code == 409  # no comparison runs yet
    r = client.post(f"/api/jobs/{job}/compare", json={"losses": "gram,sliced-wasserstein"})
    assert r.status_code == 200, r.text
    queued = r.json()["jobs"]  # gram is the job's own loss: one new run
    assert [(q["parent"], q["settings"]["style_loss"]) for q in queued] == [(job, "sliced-wasserstein")]
    assert {k: v for k, v in queued[0]["settings"].items() if k != "style_loss"} == \
        {k: v for k, v in client.get(f"/api/jobs/{job}").json()["settings"].items() if k != "style_loss"}
    child = queued[0]["id"]
    again = client.post(f"/api/jobs/{job}/compare", json={"losses": "sliced-wasserstein,gram"})
    assert again.status_code == 200 and again.json()["jobs"] == []  # queued already, or the job's own loss
    assert wait(client, child)["state"] == "done"
    r = client.post(f"/api/jobs/{job}/compare-report")
    assert r.status_code == 200, r.text
    page = client.get(r.json()["report"]).text
    table = cells(page)
    assert set(table) == {"content image", f"#{job} gram", f"#{child} sliced-wasserstein"}
    assert table["content image"][:3] == ["0.000", "1.000", "1.000"]  # content, gram, sliced-wasserstein
    assert float(table[f"#{job} gram"][1]) < 1 and float(table[f"#{child} sliced-wasserstein"][2]) < 1
    grid = client.get(f"/api/jobs/{job}/report/compare.png")
    assert grid.headers["content-type"] == "image/png" and Image.open(io.BytesIO(grid.content)).width == 3 * 48
    texture = submit(client, None, [s], size=32, steps=1)
    wait(client, texture)
    assert client.post(f"/api/jobs/{texture}/compare", json={}).status_code == 409


def tinted(keep: int) -> Image.Image:
    """Swirls with two of the three channels darkened: a style of one colour (0 red, 2 blue)."""
    a = np.asarray(samples.swirls(48, 48, seed=1)).astype(float)
    a[..., [k for k in (0, 2) if k != keep]] *= 0.2
    a[..., 1] *= 0.5
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def redness(image: np.ndarray) -> float:
    return float((image[..., 0].astype(float) - image[..., 2]).mean())


def test_masks_are_uploads_and_reach_the_run(client: TestClient) -> None:
    c = upload(client, png(samples.landscape(64, 48)), "c.png")
    s, s2 = upload(client, png(tinted(0)), "red.png"), upload(client, png(tinted(2)), "blue.png")
    left = Image.new("L", (64, 48), 0)
    left.paste(255, (0, 0, 32, 48))
    m1 = upload(client, png(left), "left.png")
    m2 = upload(client, png(Image.eval(left, lambda v: 255 - v)), "right.png")
    black = upload(client, png(Image.new("L", (64, 48), 0)), "black.png")
    body = {"content": c, "styles": [s, s2], "settings": FAST}

    def post(masks):
        return client.post("/api/jobs", json={**body, "masks": masks})

    bad = [
        ([{"content_mask": m1, "style": 3}], "mask 1: style number 3, but the job has 2 style images"),
        ([{"content_mask": "../../etc/passwd", "style": 1}], "mask 1: content_mask must be the id of an upload"),
        ([{"content_mask": m1, "style": "1"}], "mask 1: style must be the number of a style image, from 1"),
        ([{"content_mask": black, "style": 1}], "content mask is black everywhere (an empty region): black.png"),
        ("left.png", "masks must be a list of {content_mask, style, style_mask}"),
    ]
    for masks, message in bad:
        r = post(masks)
        assert r.status_code == 400 and r.json() == {"error": message}, (masks, r.text)
    r = post([{"content_mask": "0" * 64, "style": 1}])
    assert r.status_code == 404 and r.json() == {"error": "mask 1: no upload 0000000000000000"}
    r = client.post("/api/jobs", json={"content": None, "styles": [s], "settings": FAST,
                                       "masks": [{"content_mask": m1, "style": 1}]})
    assert r.status_code == 400 and "texture" in r.json()["error"]
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing queued by a bad request

    white = upload(client, png(Image.new("L", (48, 48), 255)), "white.png")
    regions = [{"content_mask": m1, "style": 1, "style_mask": None},
               {"content_mask": m2, "style": 2, "style_mask": white}]
    swapped = [{"content_mask": m2, "style": 1, "style_mask": None},
               {"content_mask": m1, "style": 2, "style_mask": None}]
    jobs = []
    for masks in (regions, swapped):
        r = post(masks)
        assert r.status_code == 200, r.text
        jobs.append(r.json()["id"])
    for j in jobs:
        assert wait(client, j)["state"] == "done"
    record = client.get(f"/api/jobs/{jobs[0]}/provenance").json()
    assert [(m["style"], m["style_mask"] is not None) for m in record["config"]["masks"]] == [(0, False), (1, True)]
    a, b = (np.asarray(Image.open(io.BytesIO(client.get(f"/api/jobs/{j}/result").content))) for j in jobs)
    # each half takes its region's style: red where style 1 (red) goes, blue where style 2 (blue) goes
    assert redness(a[:, :32]) - redness(a[:, 32:]) > 15 and redness(b[:, 32:]) - redness(b[:, :32]) > 15
    again = client.post(f"/api/jobs/{jobs[0]}/restart", json={}).json()
    assert again["masks"] == regions


@pytest.mark.parametrize("dropped", [("masks", "continued"), ("continued",), ()])
def test_a_data_folder_from_before_versioning_is_migrated(tmp_path: Path, dropped: tuple[str, ...]) -> None:
    """A data folder as earlier servers left it (no schema version; a jobs table without the columns they did not
    have yet) is brought to the current version in place, and its jobs stay readable."""
    import sqlite3

    from stylelab.web.db import APPLICATION_ID, DB_NAME, WEB_DB

    data = tmp_path / "data"
    with TestClient(create_app(data), base_url=BASE) as client:
        c, s = inputs(client)
        wait(client, submit(client, c, [s], steps=1))
    db = sqlite3.connect(data / DB_NAME, isolation_level=None)
    for column in dropped:
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.execute("PRAGMA user_version = 0")
    db.execute("PRAGMA application_id = 0")
    db.close()
    with TestClient(create_app(data), base_url=BASE) as client:
        jobs = client.get("/api/jobs").json()["jobs"]
        assert [(j["state"], j["masks"], j["continued"]) for j in jobs] == [("done", [], 0)]
        wait(client, submit(client, c, [s], steps=1))  # and new jobs are stored with the columns
        assert len(client.get("/api/jobs").json()["jobs"]) == 2
    db = sqlite3.connect(data / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == WEB_DB.version
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert {"masks", "continued"} <= {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
    db.close()


def test_a_preset_job_stored_by_the_earlier_form_keeps_its_settings(tmp_path: Path) -> None:
    """The form used to show stylelab's defaults under a preset and store them; it now shows the preset's values,
    and a stored field that differs from them counts as the user's. Opening an earlier data folder rewrites such
    jobs, so that Replay runs what they ran (nn at weight 30, not the defaults), colour step still off."""
    import json
    import sqlite3

    from stylelab.web.db import DB_NAME, Database
    from stylelab.web.schema import form_schema, settings_to_config

    old_form = {**{f["name"]: f["default"] for f in form_schema()}, "preset": "nnst"}
    path = tmp_path / DB_NAME
    Database(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO jobs (kind, styles, settings, state) VALUES ('run', '[]', ?, 'done')",
               (json.dumps(old_form),))
    db.execute("PRAGMA user_version = 3")
    db.close()
    Database(path)
    db = sqlite3.connect(path)
    stored = json.loads(db.execute("SELECT settings FROM jobs").fetchone()[0])
    db.close()
    config = settings_to_config(stored)[0]
    assert (config.style_loss, config.style_weight, config.color) == ("nn", 30.0, "none")
    assert settings_to_config(old_form)[0].style_loss == "gram:0.5,sliced-wasserstein:0.5"  # what it would run


def test_a_job_can_start_from_an_uploaded_image(client: TestClient) -> None:
    c, s = inputs(client)
    start = upload(client, png(samples.swirls(64, 48, seed=5)), "start.png")
    r = client.post("/api/jobs", json={"content": c, "styles": [s], "settings": FAST, "init": "../start.png"})
    assert r.status_code == 400 and r.json()["error"].startswith("init must be the id of an upload")
    r = client.post("/api/jobs", json={"content": c, "styles": [s], "settings": {**FAST, "steps": 1}, "init": start})
    assert r.status_code == 200, r.text
    job = r.json()["id"]
    assert wait(client, job)["state"] == "done"
    record = client.get(f"/api/jobs/{job}/provenance").json()
    assert Path(record["config"]["init"]).name.startswith(start)  # the upload, by its hash
    out = np.asarray(Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/result").content))).astype(float)
    size = out.shape[1::-1]
    init = np.asarray(samples.swirls(64, 48, seed=5).resize(size, Image.BICUBIC)).astype(float)
    content = np.asarray(samples.landscape(64, 48).resize(size, Image.BICUBIC)).astype(float)
    assert np.abs(out - init).mean() < np.abs(out - content).mean()  # one step from the swirls, not the content
    again = client.post(f"/api/jobs/{job}/restart", json={}).json()  # Replay: from the same chosen image
    assert again["init"] == start and not again["continued"]
    wait(client, again["id"])
    went_on = client.post(f"/api/jobs/{job}/continue", json={}).json()  # from the result: a continuation
    assert went_on["continued"] and went_on["init"] not in (None, start)
    wait(client, went_on["id"])
    assert client.post(f"/api/jobs/{went_on['id']}/restart", json={}).json()["init"] is None  # afresh


def steps_seen(c: TestClient, job: int, n: int) -> None:
    """Return once the job has taken `n` steps (read from its event stream)."""
    with c.stream("GET", f"/api/jobs/{job}/events") as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                e = json.loads(line[6:])
                if e["type"] == "step" and e["step"] >= n:
                    return
    raise AssertionError(f"job {job} ended before step {n}")


def test_a_cancelled_job_keeps_its_last_image_and_goes_on_from_it(client: TestClient) -> None:
    c, s = inputs(client)
    job = submit(client, c, [s], steps=400)
    steps_seen(client, job, 2)
    assert client.post(f"/api/jobs/{job}/cancel").json()["state"] == "running"  # stops after the current step
    row = wait(client, job)
    assert row["state"] == "cancelled" and row["error"] is None and 2 <= row["steps"] < 400
    assert row["result"] == f"{job}.png" and row["losses"]["style"] > 0
    got = events(client, job)
    assert got.index({"type": "state", "state": "stopping"}) < len(got) - 1  # said at once, before the end
    assert got[-1] == {"type": "end", "state": "cancelled", "error": None}
    kept = Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/result").content))
    assert kept.size == (48, 36)
    record = json.loads(kept.text[PROVENANCE_KEY])
    assert record["stopped_at_step"] == row["steps"] and record["config"]["steps"] == 400
    new = client.post(f"/api/jobs/{job}/continue", json={"settings": {**FAST, "steps": 1}})
    assert new.status_code == 200, new.text
    assert wait(client, new.json()["id"])["state"] == "done"
    init = Path(client.get(f"/api/jobs/{new.json()['id']}/provenance").json()["config"]["init"])
    assert Image.open(init).convert("RGB").tobytes() == kept.convert("RGB").tobytes()


def test_every_job_route_answers_an_id_past_sqlites_integers_with_404(client: TestClient) -> None:
    huge = "99999999999999999999999"
    routes = [(m, r.path) for router in ROUTERS for r in router.routes  # type: ignore[attr-defined]
              if "{job_id}" in getattr(r, "path", "") for m in sorted(r.methods - {"HEAD"})]  # type: ignore[attr-defined]
    assert len(routes) >= 13  # the job, delete, events, preview, result, provenance, report file, 6 actions
    for method, path in routes:
        url = path.replace("{job_id}", huge).replace("{name}", "index.html")
        r = client.request(method, url, json={} if method == "POST" else None)
        assert r.status_code == 404 and "internal" not in r.json()["error"], (method, path, r.text)
        r = client.request(method, path.replace("{job_id}", "abc").replace("{name}", "index.html"))
        assert r.status_code == 422, (method, path, r.text)


def test_serve_refuses_a_damaged_or_foreign_database_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import socket
    import sqlite3

    import uvicorn

    from stylelab.web.db import DB_NAME

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("served a data folder it should refuse"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    damaged, foreign = tmp_path / "damaged", tmp_path / "foreign"
    damaged.mkdir()
    (damaged / DB_NAME).write_bytes(bytes(range(256)) * 20)
    foreign.mkdir()
    db = sqlite3.connect(foreign / DB_NAME)
    db.execute("CREATE TABLE jobs (name TEXT, due REAL)")  # another program's table of the same name
    db.commit()
    db.close()
    for data in (damaged, foreign):
        before = (data / DB_NAME).read_bytes()
        assert cli.main(["serve", "--data", str(data), "--port", str(port)]) == 2
        assert capsys.readouterr().err == \
            f"stylelab: error: {data / DB_NAME} is not a stylelab database (damaged?)\n"
        assert (data / DB_NAME).read_bytes() == before  # left as it was (no WAL switch, no tables added)


def test_a_job_the_server_died_in_is_interrupted_and_goes_on_from_its_last_preview(tmp_path: Path) -> None:
    """The data folder as a killed server leaves it: copied (SQLite's backup) while a job runs."""
    import shutil
    import sqlite3

    from stylelab.web.db import DB_NAME

    data, left = tmp_path / "data", tmp_path / "left"
    with TestClient(create_app(data, preview_every=1), base_url=BASE) as client:
        c, s = inputs(client)
        job = submit(client, c, [s], steps=400)
        steps_seen(client, job, 3)
        shutil.copytree(data, left, ignore=shutil.ignore_patterns(f"{DB_NAME}*", "*.part"))
        src, dst = sqlite3.connect(data / DB_NAME), sqlite3.connect(left / DB_NAME)
        src.backup(dst)
        src.close()
        dst.close()
        client.post(f"/api/jobs/{job}/cancel")
    with TestClient(create_app(left), base_url=BASE) as client:
        r = client.get("/api/jobs").json()
        assert r["running"] is None and r["queue"] == []
        row = client.get(f"/api/jobs/{job}").json()
        assert (row["state"], row["error"]) == ("failed", "interrupted: the server stopped while it ran")
        # a page that followed it on the old server reconnects with the last event id it saw: it hears the end
        with client.stream("GET", f"/api/jobs/{job}/events", headers={"Last-Event-ID": "5"}) as stream:
            got = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
        assert got == [{"type": "end", "state": "failed", "error": row["error"]}]
        assert (left / "results" / f"{job}-last.jpg").is_file()  # its latest preview, written while it ran
        went_on = client.post(f"/api/jobs/{job}/continue", json={"settings": {**FAST, "steps": 1}})
        assert went_on.status_code == 200, went_on.text
        assert wait(client, went_on.json()["id"])["state"] == "done"
        init = Path(client.get(f"/api/jobs/{went_on.json()['id']}/provenance").json()["config"]["init"])
        assert Image.open(init).size == (48, 36)  # the last preview, full size
        again = client.post(f"/api/jobs/{job}/restart", json={"settings": {**FAST, "steps": 1}}).json()
        assert wait(client, again["id"])["state"] == "done"
    results = sorted(p.name for p in (left / "results").iterdir())
    assert results == sorted([f"{went_on.json()['id']}.png", f"{again['id']}.png", f"{job}-last.jpg"])


def test_explain_of_a_job_cancelled_at_a_coarse_scale_measures_at_its_images_size(client: TestClient) -> None:
    c, s = inputs(client)
    job = submit(client, c, [s], scales="48:400,64:2")  # size 64, from a first scale at 48 px
    steps_seen(client, job, 2)
    client.post(f"/api/jobs/{job}/cancel")
    assert wait(client, job)["state"] == "cancelled"
    kept = Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/result").content))
    assert kept.size == (48, 36)
    r = client.post(f"/api/jobs/{job}/explain")
    assert r.status_code == 200, r.text
    measured = Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/report/output.png").content))
    assert measured.size == kept.size  # not resized to the 64 px the job was heading for


def test_the_form_offers_presets_and_its_explicit_fields_override_them():
    from stylelab.web.schema import form_schema, settings_to_config

    field = next(f for f in form_schema() if f["name"] == "preset")
    assert field["choices"] == ["nnst"] and field["default"] is None
    config, _ = settings_to_config({"preset": "nnst"})
    assert (config.style_loss, config.style_weight, config.scales[0]) == ("nn", 30.0, (64, 100))
    config, _ = settings_to_config({"preset": "nnst", "style_weight": "5", "size": "256"})
    assert config.style_weight == 5.0 and config.scales == ((64, 100), (128, 80), (256, 30))
    assert settings_to_config({"preset": ""})[0].style_loss == "gram:0.5,sliced-wasserstein:0.5"
    # the form shows the preset's values: one set back to stylelab's default is the user's (no colour step) ...
    assert field["presets"]["nnst"] == {"style_loss": "nn", "style_weight": 30.0, "color": "recolor"}
    assert settings_to_config({"preset": "nnst"})[0].color == "recolor"
    assert settings_to_config({"preset": "nnst", "color": "none"})[0].color == "none"
    assert settings_to_config({"preset": "nnst", "style_weight": "10"})[0].style_weight == 10.0
    # ... and a job's stored values (the form as it was) give the same settings again
    config, values = settings_to_config({"preset": "nnst", "size": "256"})
    assert values["color"] == "recolor" and settings_to_config(values)[0] == config
    texture = settings_to_config({"preset": "nnst"}, texture_size=64)[0]
    assert (texture.color, texture.init) == ("none", "noise")  # a texture: no colour step, starts from noise
