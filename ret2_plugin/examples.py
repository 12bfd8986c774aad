"""Where the bundled example corpus lives: package data of an installed wheel
(`ret2_plugin/example_data/`, see setup.py) or `examples/data/` of a source checkout.

`ret2 demo` and the starter model read it from here, so they run in any directory, offline.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "example_data"
CHECKOUT = Path(__file__).resolve().parents[1] / "examples" / "data"


def example_data_dir() -> Path:
    """The folder holding `corpus.jsonl`, `queries_*.jsonl`, `images/` and `query_images/`.

    An installed wheel has it as package data; an editable install or a checkout reads `examples/data/`.
    When neither exists the packaged location is returned, and the caller's "not found" error names it.
    """
    for folder in (PACKAGED, CHECKOUT):
        if (folder / "corpus.jsonl").is_file():
            return folder
    return PACKAGED
