"""Shared pytest set-up: everything offline, small thread counts, GPU tests skip cleanly.

``make test`` runs the suite on every core (pytest-xdist, ``--dist loadfile``): the tests
of one file run on one worker, so a module fixture (the book build, an autograded batch)
is built once. The files that take longest are collected first and, with the Makefile's
``--no-loadscope-reorder``, handed out first, so the book build starts at once on one
worker while the others take the rest.
"""

import os

# No test may reach a model hub or any other network service.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Under xdist, share the cores among the workers instead of oversubscribing them: an OpenMP
# team on a core that another worker keeps busy waits for its slowest thread at every step.
# The environment variable reaches the subprocesses too (the book's kernels, nbgrader's).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = max(1, (os.cpu_count() or 1) // _workers)
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


@pytest.fixture
def one_thread():
    """Run a test on one thread: with tiny tensors one thread is much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# the files whose module fixtures take minutes, longest first
SLOW_FILES = ("test_book.py", "test_grading.py", "test_exercises.py", "test_hostile.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: collection order within a file

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
