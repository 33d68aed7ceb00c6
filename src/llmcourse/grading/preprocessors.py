"""nbgrader preprocessors used by the course's ``nbgrader_config.py``.

:class:`NormalizeNotebook` runs first when nbgrader generates the student
version of an assignment. It makes ``exercises/`` a pure function of
``solutions/``: whoever regenerates it, on whatever machine, gets the same
bytes, so the committed copy can be checked against a fresh generation.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Dict, List, Unicode

PYTHON3_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}

_CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")


class NormalizeNotebook(Preprocessor):
    """Remove machine- and session-specific metadata; pin the kernel to ``python3``.

    * notebook metadata keeps only the keys in :attr:`keep_notebook_metadata`;
      ``kernelspec`` is replaced by :attr:`kernelspec` and ``language_info`` is
      reduced to the language name (no interpreter version);
    * cell metadata keeps only the keys in :attr:`keep_cell_metadata`
      (execution timings, scroll state and editor state go);
    * cells that have no id in the file on disk get a deterministic one
      (nbformat would otherwise invent a random id on every read).

    Running first in ``GenerateAssignment`` means the gradebook also records the
    normalised kernelspec, so autograding always starts a ``python3`` kernel.
    """

    enabled = Bool(True, help="Whether to run this preprocessor.").tag(config=True)
    kernelspec = Dict(PYTHON3_KERNELSPEC, help="Kernelspec written into every notebook.").tag(
        config=True
    )
    language = Unicode("python", help="language_info.name written into every notebook.").tag(
        config=True
    )
    keep_notebook_metadata = List(
        ["kernelspec", "language_info"], help="Notebook metadata keys that are kept."
    ).tag(config=True)
    keep_cell_metadata = List(
        ["nbgrader", "tags", "deletable", "editable", "slideshow"],
        help="Cell metadata keys that are kept.",
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        nb.metadata = type(nb.metadata)(
            {k: v for k, v in nb.metadata.items() if k in self.keep_notebook_metadata}
        )
        nb.metadata["kernelspec"] = dict(self.kernelspec)
        nb.metadata["language_info"] = {"name": self.language}
        for cell in nb.cells:
            for key in list(cell.get("metadata", {})):
                if key not in self.keep_cell_metadata:
                    del cell.metadata[key]
        self._fix_cell_ids(nb, resources)
        return nb, resources

    @staticmethod
    def _raw_cells(resources: dict) -> list | None:
        meta = resources.get("metadata") or {}
        name, path = meta.get("name"), meta.get("path")
        if not name:
            return None
        filename = os.path.join(path or "", name + ".ipynb")
        try:
            with open(filename, encoding="utf-8") as fh:
                raw = json.load(fh)
            return raw.get("cells") if isinstance(raw, dict) else None
        except (OSError, ValueError):
            return None

    def _fix_cell_ids(self, nb: Any, resources: dict) -> None:
        if (nb.nbformat, nb.nbformat_minor) < (4, 5):
            return
        raw = self._raw_cells(resources)
        if raw is None or len(raw) != len(nb.cells):
            return
        taken = {c.get("id") for c in raw if isinstance(c, dict) and c.get("id")}
        for index, (cell, raw_cell) in enumerate(zip(nb.cells, raw)):
            if isinstance(raw_cell, dict) and _CELL_ID.match(str(raw_cell.get("id", ""))):
                continue
            new_id = f"cell-{index}"
            while new_id in taken:
                new_id += "x"
            taken.add(new_id)
            cell["id"] = new_id
