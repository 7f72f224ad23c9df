"""Shared pytest set-up for tests/ and the notebooks run by nbval.

The whole suite runs offline on the `tiny` profile unless COURSE_PROFILE says otherwise; the notebooks executed by
nbval share one fresh run directory (the kernels inherit this environment).
"""

import os
import tempfile

os.environ.setdefault("COURSE_PROFILE", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # fail fast, not after a minute of retries, if anything reaches for the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("COURSE_RUN_DIR", tempfile.mkdtemp(prefix="course-nbval-run-"))
