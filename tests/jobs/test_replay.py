"""Reproducibility across executors: a batch job run in a worker process replays to the same pixels in this one."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from stylelab import samples
from stylelab.cli import main
from stylelab.image import read_metadata


def test_a_batch_made_by_worker_processes_replays_in_process_to_the_same_pixels(tmp_path, capsys):
    """`--workers 2` runs each job in a process of its own with its share of the threads (1 each on 2 cores); the
    output's record keeps that count and `replay` uses it, so the pixels are identical in a process with more."""
    samples.landscape(64, 48).save(tmp_path / "c.png")
    samples.swirls(56, 56, seed=1).save(tmp_path / "s.png")
    out = tmp_path / "out"
    code = main(["batch", str(tmp_path / "c.png"), "--style", str(tmp_path / "s.png"), "-o", str(out),
                 "--workers", "2", "--size", "64", "--steps", "8", "-q"])
    assert code == 0, capsys.readouterr().err
    made = out / "c_s.png"
    record = json.loads(read_metadata(made)["stylelab"])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(record["threads"] + 1)  # a process with more threads than the worker had
        again = tmp_path / "again.png"
        assert main(["replay", str(made), "-o", str(again), "-q"]) == 0, capsys.readouterr().err
        assert torch.get_num_threads() == record["threads"] + 1  # replay gave the process its own count back
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(np.asarray(Image.open(made)), np.asarray(Image.open(again)))
