"""Reports of results, made on request, in DATA/reports/<job id>/: `stylelab explain` of a result (index.html) and
the comparison of a result with the same job under other style losses (compare.html, compare.png).

Every file is written atomically (explain's through stylelab.files; here save_image and write_text_atomic)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..engine import provenance
from ..files import write_text_atomic
from ..image import resize_long_edge, save_image, tensor_to_pil, to_tensor
from .errors import Conflict, NotFound

if TYPE_CHECKING:
    from .runner import Runner

__all__ = ["Reports"]


class Reports:
    """The reports of one data folder's jobs; one is made at a time (they measure with VGG19)."""

    def __init__(self, runner: Runner, folder: Path) -> None:
        self.runner, self.folder = runner, folder
        self.lock = threading.Lock()

    def explain(self, job_id: int) -> Path:
        """`stylelab explain` of a run's result (content, styles, the result, its settings), measured at the
        result's own size (no size forced: a cancelled multi-scale run stopped at a coarser one than its settings
        say): the report folder (made once; later calls return it)."""
        from ..analysis.report import explain

        self._finished_run(job_id, "explain")
        folder = self.folder / str(job_id)
        with self.lock:
            if not (folder / "index.html").is_file():
                result = self.runner.result_path(job_id)
                job, config = provenance.read_provenance(str(result))
                explain(job["content"], job["styles"], folder, str(result), config)
        return folder

    def compare(self, job_id: int, losses: str) -> list[dict]:
        """Queue the finished run `job_id` again under each style loss of `losses` (the specs of `stylelab compare
        --losses`: a comma list, or 'all') other than its own, with its inputs and other settings: its children,
        which its compare report puts side by side. Returns the queued jobs."""
        from ..analysis.compare import split_specs
        from ..losses.spec import parse_style_losses

        row = self._finished_run(job_id, "compare")
        try:
            specs = split_specs(losses)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        own = [t.label for t in parse_style_losses(row["settings"]["style_loss"])]
        have = {c["settings"]["style_loss"] for c in self._comparisons(row, ("queued", "running", "done"))}
        have |= set(own) if len(own) == 1 else set()  # a single loss is the job's own row; a mix is not a spec
        init = None if row["continued"] else row["init"]  # a chosen start image is one of the job's inputs
        return [self.runner.submit(row["content"], row["styles"], {**row["settings"], "style_loss": spec},
                                   init=init, parent=job_id, masks=row["masks"]) for spec in specs if spec not in have]

    def _comparisons(self, row: dict, states: tuple[str, ...]) -> list[dict]:
        """The job's comparison runs, oldest first: its children with the same inputs and settings but the style
        loss, started as it was (from the content, or from the same chosen image), not edit-and-continue ones."""
        same = {k: v for k, v in row["settings"].items() if k != "style_loss"}
        return [c for c in self.runner.jobs()[::-1]
                if c["parent"] == row["id"] and c["state"] in states and not c["continued"] and c["kind"] == "run"
                and c["init"] == (None if row["continued"] else row["init"])
                and (c["content"], c["styles"], c["masks"]) == (row["content"], row["styles"], row["masks"])
                and {k: v for k, v in c["settings"].items() if k != "style_loss"} == same]

    def compare_report(self, job_id: int) -> Path:
        """The report of `compare`: the result and its finished comparison runs (same inputs and settings, another
        style loss) in a grid, and every one measured under every loss they used (analysis.compare.evaluator;
        content image = 1). Written to the job's report folder as compare.html and compare.png, remade each call."""
        from ..analysis.compare import grid, page

        row = self._finished_run(job_id, "compare")
        runs, seen = [row], {row["settings"]["style_loss"]}
        for c in self._comparisons(row, ("done",)):
            if c["settings"]["style_loss"] not in seen:
                runs.append(c)
                seen.add(c["settings"]["style_loss"])
        if len(runs) < 2:
            raise Conflict(f"job {job_id} has no finished comparison runs yet (compare it first)")
        folder = self.folder / str(job_id)
        with self.lock:
            rows = self._measure(job_id, runs)
            folder.mkdir(parents=True, exist_ok=True)
            save_image(grid(rows), folder / "compare.png")
            html = page(rows, f"Job {job_id} under other style losses", "compare.png", self._notes(row))
            write_text_atomic(folder / "compare.html", html)
        return folder

    def _measure(self, job_id: int, runs: list[dict]) -> list:
        """The compare report's rows: the content image, then each run's result, under every loss they used."""
        from ..analysis.compare import Row, evaluator
        from ..engine.optimize import load_inputs
        from ..losses.spec import parse_style_losses

        labels = list(dict.fromkeys(t.label for r in runs for t in parse_style_losses(r["settings"]["style_loss"])))
        job, config = provenance.read_provenance(str(self.runner.result_path(job_id)))
        content, styles = load_inputs(job["content"], job["styles"])
        assert content is not None  # a run has a content image
        distances = evaluator(content, styles, config, labels)
        reference = resize_long_edge(content, config.size)
        rows = [Row("content image", tensor_to_pil(reference), distances(reference), float("nan"))]
        for r in runs:
            image = to_tensor(str(self.runner.result_path(r["id"])), "result")
            rows.append(Row(f"#{r['id']} {r['settings']['style_loss']}", tensor_to_pil(image), distances(image),
                            (r["finished"] - r["started"]) / max(1, r["steps"])))
        return rows

    def _notes(self, row: dict) -> str:
        notes = ["s/step: the job's time over its steps (targets included)."]
        if row["continued"]:
            notes.append(f"Job {row['id']} went on from another job's image (edit and continue); its comparison "
                         "runs start from the content.")
        if row["masks"]:
            notes.append("With regions, the distances are over the whole image, to the blend of the styles.")
        waiting = len(self._comparisons(row, ("queued", "running")))
        if waiting:
            notes.append(f"{waiting} comparison run{'s are' if waiting > 1 else ' is'} still queued or running: "
                         "show the report again when done.")
        return " ".join(notes)

    def _finished_run(self, job_id: int, what: str) -> dict:
        row = self.runner.job(job_id)
        if row["kind"] != "run":
            raise Conflict(f"{what} needs a content image; this job is a texture")
        if not row["result"]:
            raise Conflict(f"job {job_id} has no result to {what} ({row['state']})")
        return row

    def file(self, job_id: int, name: str) -> Path:
        """A file of the job's reports, found by listing its folder (the name is only compared)."""
        folder = self.folder / str(job_id)
        files = {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
        if name not in files:
            raise NotFound(f"no report file {name!r} for job {job_id} (explain it first)")
        return files[name]

    def remove(self, job_id: int) -> None:
        folder = self.folder / str(job_id)
        if folder.is_dir():
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
