"""`stylelab batch`: many contents x styles (or a manifest) into an output folder with a resumable job store.

    stylelab batch CONTENT... --style STYLE [--style STYLE ...] -o OUTDIR [run flags]
    stylelab batch --manifest jobs.csv|jobs.jsonl -o OUTDIR [run flags: defaults for every row]
    stylelab batch --status OUTDIR

Every flag of `stylelab run` applies (the flag builders are stylelab.flags'). Exit 0 only if every job succeeded (or
was already done), 1 if any failed, 2 for bad usage, a malformed manifest, another batch running on OUTDIR or
a file in place of its job store that is not one (all before any work). `--status` reads the store while a batch
runs; a job left running by a batch that is gone (killed) shows as interrupted, and a rerun redoes it.
"""

from __future__ import annotations

import argparse
import copy
import csv
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..config import ConfigError
from ..engine.events import Step
from ..errors import StylelabError
from ..image import SAVE_FORMATS

if TYPE_CHECKING:
    from ..jobs.spec import JobSpec
    from .progress import StepBar

__all__ = [
    "DEFAULT_NAME",
    "INPUT_SUFFIXES",
    "RESERVED",
    "Planned",
    "check_executor",
    "expand_contents",
    "flag_columns",
    "make_executor",
    "output_name",
    "plan_manifest",
    "plan_product",
    "print_status",
    "read_manifest",
    "register",
    "run",
    "split_styles",
    "status_table",
]

DEFAULT_NAME = "{content}_{style}.png"
INPUT_SUFFIXES = {*SAVE_FORMATS, ".gif", ".ppm", ".pgm", ".pbm", ".tga", ".jp2"}
RESERVED = ("content", "style", "output")  # manifest columns that are not run flags
_NOT_IN_BATCH = ("checkpoint", "resume", "save_every")  # `run` output flags a batch has no use for
_NOT_COLUMNS = (*_NOT_IN_BATCH, "checkpoint_every", "quiet")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `batch` subcommand to the command line's parser, with the run's own flag builders."""
    from ..flags import add_config_flags as add_settings
    from ..flags import add_outputs

    p = sub.add_parser(
        "batch", help="many contents x styles (or a CSV/JSONL manifest) into a folder, resumable",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Stylise every CONTENT (files, folders, globs) with every --style (or --pairing zip), or every "
        "row of --manifest, into OUTDIR. A job store in OUTDIR makes a rerun skip finished jobs whose output is "
        "unchanged and redo the rest; one batch at a time runs on a folder. Run flags apply to every job; manifest "
        "columns override them per row.",
    )
    p.add_argument("contents", nargs="*", metavar="content", help="content images, folders or globs")
    p.add_argument("--style", action="append", default=[], metavar="STYLE[;STYLE...]",
                   help="a style image (repeat for more; 'a.png;b.png' blends two in one job)")
    p.add_argument("--pairing", choices=("product", "zip"), default="product",
                   help="product: every content with every style; zip: the k-th content with the k-th style")
    p.add_argument("--manifest", default=None, metavar="JOBS.csv|JOBS.jsonl",
                   help="one job per row: content, style (';' for blends), optional output, run flags as columns")
    p.add_argument("-o", "--output-dir", default=None, metavar="OUTDIR", help="output folder (made if missing)")
    p.add_argument("--name", default=DEFAULT_NAME, help="output name pattern: {content}, {style}, {n}")
    p.add_argument("--retries", type=int, default=1, help="retries of a job that failed (not for bad inputs)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="N local worker processes (torch threads split between them); with --ray: N actors")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray actors (pip install 'stylelab[ray]'): no ADDRESS starts a local Ray, 'auto' "
                   "joins RAY_ADDRESS or the cluster of `ray start`")
    p.add_argument("--status", default=None, metavar="OUTDIR",
                   help="print the job table of OUTDIR and exit (interrupted: left running by a batch that was "
                   "killed)")
    add_settings(p)
    add_outputs(p)


class _RowParser(argparse.ArgumentParser):
    """Parses one manifest row's flags; its errors fail that row instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _row_parser() -> _RowParser:
    from ..flags import add_config_flags as add_settings
    from ..flags import add_outputs

    p = _RowParser(add_help=False, prog="manifest row")
    add_settings(p)
    add_outputs(p)
    return p


def flag_columns() -> dict[str, argparse.Action]:
    """Manifest column name (a flag's name with '_' for '-', e.g. style_weight) -> its argparse action."""
    return {a.dest: a for a in _row_parser()._actions if a.option_strings and a.dest not in _NOT_COLUMNS}


@dataclass
class Planned:
    """A job as the command line or a manifest row gave it: a spec, or the one-line error that stops it."""

    key: str
    spec: JobSpec | None
    error: str | None = None
    raw: dict | None = None


def run(args: argparse.Namespace) -> int:
    if args.status:
        return print_status(Path(args.status))
    from ..jobs.executors import batch

    for name in _NOT_IN_BATCH:
        if getattr(args, name):
            raise ConfigError(f"--{name.replace('_', '-')} is not available in batch (each job is short; a rerun "
                              "resumes the batch)")
    if not args.output_dir:
        raise ConfigError("batch needs -o OUTDIR (or --status OUTDIR)")
    if args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder is a file: {out}")
    planned = plan_manifest(args) if args.manifest else plan_product(args)
    check_executor(args)
    out.mkdir(parents=True, exist_ok=True)
    specs = [p.spec for p in planned if p.spec is not None]
    from ..jobs.store import Store, exclusive

    with exclusive(out):  # before any work: a second batch on the folder stops here (`--status` takes no lock)
        with Store(out) as store:
            for seq, p in enumerate(planned):
                if p.spec is None:
                    store.reject(p.key, seq, p.raw or {}, p.error or "rejected")
        executor = make_executor(args)
        progress = _Progress(args.quiet)
        try:
            report = batch(specs, out, executor=executor, callback=progress, retries=args.retries)
        finally:
            progress.close()
            executor.close()
    rejected = [p for p in planned if p.spec is None]
    if not args.quiet:
        print_status(out, keys={p.key for p in planned}, stream=sys.stderr)
    failed = len(report.failed) + len(rejected)
    if not args.quiet:
        print(f"{len(report.done)} done, {len(report.skipped)} already done, {failed} failed", file=sys.stderr)
    return 0 if failed == 0 else 1


def check_executor(args: argparse.Namespace) -> None:
    """The executor flags' errors, before any work (make_executor starts processes or joins Ray)."""
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.ray is not None:
        from ..jobs.executors import _ray

        _ray()  # the extra is installed


def make_executor(args: argparse.Namespace):
    from ..jobs.executors import InProcess, LocalProcesses, RayActors

    check_executor(args)
    if args.ray is not None:
        return RayActors(None if args.ray == "local" else args.ray, actors=args.workers)
    if args.workers and args.workers > 1:
        return LocalProcesses(args.workers)
    return InProcess()


# ------------------------------------------------------------------------------------------------ planning


def expand_contents(items: list[str]) -> list[Path]:
    """Files as given; folders: their images (sorted, not recursive); globs: their matches (sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if any(ch in item for ch in "*?[") and not p.exists():
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise ConfigError(f"no files match {item!r}")
            out.extend(matches)
        elif p.is_dir():
            images = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in INPUT_SUFFIXES)
            if not images:
                raise ConfigError(f"no images in folder {p} (suffixes: {', '.join(sorted(INPUT_SUFFIXES))})")
            out.extend(images)
        else:
            out.append(p)  # a missing file fails its own job, with its one-line error
    return list({p.absolute(): p for p in reversed(out)}.values())[::-1]  # each file once, at its first place


def split_styles(text: str) -> list[str]:
    return [s.strip() for s in text.split(";") if s.strip()]


def output_name(pattern: str, content: str, styles: list[str], n: int) -> str:
    try:
        name = pattern.format(content=Path(content).stem, style="+".join(Path(s).stem for s in styles), n=n)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--name {pattern!r}: use only {{content}}, {{style}} and {{n}} ({exc})") from None
    if Path(name).suffix.lower() not in SAVE_FORMATS:
        raise ConfigError(f"--name {pattern!r} gives {name!r}: end it with one of {', '.join(sorted(SAVE_FORMATS))}")
    return name


def plan_product(args: argparse.Namespace) -> list[Planned]:
    from ..flags import config_from_args
    from ..flags import source as _source
    from ..jobs.spec import JobSpec

    if not args.contents:
        raise ConfigError("give content images (files, folders or globs) or --manifest")
    if not args.style:
        raise ConfigError("give at least one --style")
    contents = expand_contents(args.contents)
    styles = [split_styles(s) for s in args.style]
    if any(not s for s in styles):
        raise ConfigError("--style must name an image")
    if args.pairing == "zip":
        if len(contents) != len(styles):
            raise ConfigError(f"--pairing zip needs as many styles as contents: {len(contents)} contents, "
                              f"{len(styles)} styles")
        pairs = list(zip(contents, styles))
    else:
        pairs = [(c, s) for c in contents for s in styles]
    config = config_from_args(args)  # a bad flag: exit 2 before any work
    planned = []
    for n, (content, style) in enumerate(pairs):
        key = output_name(args.name, str(content), style, n)
        config.blend_weights(len(style))
        planned.append(Planned(key, JobSpec(_source(str(content)), tuple(_source(s) for s in style), config, key,
                                            args.bit_depth)))
    return planned


def read_manifest(path: Path) -> list[dict]:
    """Rows of a CSV (header row) or JSONL (one object a line) manifest. A malformed file raises ConfigError."""
    if not path.is_file():
        raise ConfigError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc}") from None
    rows: list[dict] = []
    if suffix == ".csv":
        reader = csv.reader(text.splitlines())
        try:
            lines = [line for line in reader]
        except csv.Error as exc:
            raise ConfigError(f"manifest {path} is not valid CSV: {exc}") from None
        lines = [line for line in lines if any(cell.strip() for cell in line)]
        if not lines:
            raise ConfigError(f"manifest {path} is empty")
        header = [h.strip() for h in lines[0]]
        for need in ("content", "style"):
            if need not in header:
                raise ConfigError(f"manifest {path} has no {need!r} column (header: {', '.join(header)})")
        if len(set(header)) != len(header) or "" in header:
            raise ConfigError(f"manifest {path}: column names must be unique and non-empty")
        for k, line in enumerate(lines[1:], start=2):
            if len(line) != len(header):
                raise ConfigError(f"manifest {path} line {k}: {len(line)} fields for {len(header)} columns")
            rows.append({h: cell.strip() for h, cell in zip(header, line) if cell.strip() != ""})
    elif suffix in (".jsonl", ".ndjson"):
        for k, entry in enumerate(text.splitlines(), start=1):
            if not entry.strip():
                continue
            try:
                row = json.loads(entry)
            except ValueError as exc:
                raise ConfigError(f"manifest {path} line {k} is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise ConfigError(f"manifest {path} line {k} must be a JSON object")
            rows.append(row)
        if not rows:
            raise ConfigError(f"manifest {path} is empty")
    else:
        raise ConfigError(f"manifest {path}: use a .csv or .jsonl file")
    return rows


def plan_manifest(args: argparse.Namespace) -> list[Planned]:
    """One Planned per row; a bad row (unknown column, bad flag value, no content) carries its error."""
    path = Path(args.manifest)
    base = Path(args.manifest).parent
    rows = read_manifest(path)
    if args.contents or args.style:
        raise ConfigError("give either --manifest or contents with --style, not both")
    from ..flags import config_from_args

    config_from_args(args)  # the command line's own flags must be valid before any work
    columns = flag_columns()
    parser = _row_parser()
    planned = []
    for n, row in enumerate(rows):
        key = _row_key(args.name, row, n)
        try:
            spec = _row_spec(row, args, parser, columns, base, key)
        except StylelabError as exc:
            planned.append(Planned(key, None, f"row {n + 1}: {exc}", raw=row))
        else:
            planned.append(Planned(key, spec, raw=row))
    return planned


def _row_key(pattern: str, row: dict, n: int) -> str:
    out = row.get("output")
    if isinstance(out, str) and out.strip():
        return out.strip()
    content, style = row.get("content"), row.get("style")
    if isinstance(content, str) and content and isinstance(style, str) and split_styles(style):
        try:
            return output_name(pattern, content, split_styles(style), n)
        except ConfigError:
            pass
    return f"row{n + 1}.png"


def _row_spec(row: dict, args: argparse.Namespace, parser: _RowParser, columns: dict, base: Path, key: str):
    from ..flags import config_from_args
    from ..flags import source as _source
    from ..jobs.spec import JobSpec

    unknown = sorted(set(row) - set(RESERVED) - set(columns))
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r}; columns: content, style, output and run flags such "
                          f"as {', '.join(sorted(columns)[:6])}, ...")
    content, style = row.get("content"), row.get("style")
    if not isinstance(content, str) or not content.strip():
        raise ConfigError("no content")
    if not isinstance(style, str) or not split_styles(style):
        raise ConfigError("no style")
    argv: list[str] = []
    for name, value in row.items():
        if name in RESERVED:
            continue
        action = columns[name]
        flag = action.option_strings[-1]
        if action.nargs == 0:  # a switch: true/false
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                argv.append(flag)
            elif text not in ("0", "false", "no", "off", ""):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        elif isinstance(action, argparse._AppendAction):
            argv += [x for item in str(value).split(";") if item.strip() for x in (flag, item.strip())]
        else:
            argv += [flag, str(value)]
    row_args = parser.parse_args(argv, namespace=copy.deepcopy(args))
    config = config_from_args(row_args)
    def resolve(s: str) -> str:
        return s if Path(s).is_absolute() else str(base / s)

    styles = tuple(_source(resolve(s)) for s in split_styles(style))
    config.blend_weights(len(styles))
    return JobSpec(_source(resolve(content.strip())), styles, config, key, row_args.bit_depth)


# ------------------------------------------------------------------------------------------------ reporting


class _Progress:
    """Two bars: jobs, and the steps of the job reporting last."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.jobs: Any = None
        self.steps: StepBar | None = None
        self.current: str | None = None

    def __call__(self, event) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        from .progress import StepBar

        if event.kind == "plan":
            self.jobs = tqdm(total=event.total, initial=event.skipped, unit="job", desc="jobs", position=0,
                             dynamic_ncols=True, file=sys.stderr)
            self.steps = StepBar(0, label="steps", position=1, leave=False)
        elif event.kind == "step" and self.steps is not None:
            step = event.step
            if event.key != self.current or (step.i == 1 and isinstance(step, Step)):  # a new job, or its next scale
                self.current = event.key
                self.steps.restart(step.n, event.key)
            self.steps.show(step)
        elif event.kind == "tile" and self.steps is not None and event.key == self.current:
            self.steps.show_tiles(event.tile)
        elif event.kind in ("done", "failed") and self.jobs is not None:
            self.jobs.update(1)
            self.jobs.set_postfix_str(f"{event.failed} failed" if event.failed else "", refresh=True)
            if event.kind == "failed":
                self.jobs.write(f"stylelab: {event.key}: {event.result.error}", file=sys.stderr)

    def close(self) -> None:
        for bar in (self.steps, self.jobs):
            if bar is not None:
                bar.close()


def status_table(rows) -> list[list[str]]:
    def s(v):
        return "" if v is None else f"{v:.2f}"
    lines = [["output", "state", "attempts", "steps", "load_s", "targets_s", "steps_s", "encode_s", "total_s",
              "error"]]
    for r in rows:
        lines.append([r.key, r.state, str(r.attempts), "" if r.steps is None else str(r.steps),
                      *(s(r.seconds[t]) for t in ("load", "targets", "steps", "encode", "total")), r.error or ""])
    return lines


def print_status(folder: Path, keys: set[str] | None = None, stream=None) -> int:
    from ..jobs.store import Store

    stream = stream or sys.stdout
    with Store(folder, create=False) as store:
        rows = store.rows(keys)
        counts = store.counts() if keys is None else None
    lines = status_table(rows)
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip(), file=stream)
    if counts is not None:
        print(", ".join(f"{n} {state}" for state, n in counts.items()), file=stream)
    return 0
