"""Shared pytest set-up: everything offline, small thread counts, GPU tests skip cleanly.

``make test`` runs the suite on every core (pytest-xdist, ``--dist loadgroup``). Tests
that share an expensive module fixture (the book build, an autograded batch) are put in
one xdist group here, so the fixture is built once, on one worker, and those groups are
scheduled first: the longest jobs start while the other workers take the short tests.
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

# expensive module fixtures -> the xdist group of every test that uses them, longest first
SHARED_FIXTURES = ("book_build", "batch", "scratch_build")


def _group(item) -> str | None:
    names = getattr(item, "fixturenames", ())
    for fixture in SHARED_FIXTURES:
        if fixture in names:
            key = getattr(item, "callspec", None)
            suffix = f"-{key.params['key']}" if key is not None and "key" in key.params else ""
            return fixture + suffix
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup hook reads the xdist_group markers
def pytest_collection_modifyitems(config, items):
    rank = {}
    for item in items:
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        rank[item.nodeid] = SHARED_FIXTURES.index(group.split("-")[0]) if group else len(SHARED_FIXTURES)
    items.sort(key=lambda item: rank[item.nodeid])  # stable: file order within a rank

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
