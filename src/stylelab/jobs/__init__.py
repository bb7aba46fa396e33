"""Jobs: many runs, resumable.

    spec.py       JobSpec -> run_job -> JobResult; Worker (VGG19 loaded, a style-target cache)
    store.py      the job store (SQLite, versioned migrations, job owners, the output folder's lock)
    executors.py  in-process, local processes, Ray actors; batch(), the driver
"""

__all__ = []
