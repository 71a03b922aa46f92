"""Test-wide settings."""
import os

# The study's tensors are tiny: one thread is fastest and immune to a busy machine's other work, and the
# subprocesses the tests start inherit it. (Numbers do not depend on the thread count for these sizes.)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# `make test` runs the same Hypothesis examples every time, so a pass on one machine is a pass in CI; `make test-long`
# explores fresh random examples (CNNEXP_HYPOTHESIS=explore).
from hypothesis import settings  # noqa: E402

settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("CNNEXP_HYPOTHESIS", "repeatable"))
