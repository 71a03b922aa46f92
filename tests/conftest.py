"""Test-wide settings."""
import os

# The study's tensors are tiny: one thread is fastest and immune to a busy machine's other work, and the
# subprocesses the tests start inherit it. (Numbers do not depend on the thread count for these sizes.)
os.environ.setdefault("OMP_NUM_THREADS", "1")
