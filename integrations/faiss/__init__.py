"""FAISS index backend (the embedded default): `FaissBackend.open(directory, dim=...)`.

See `backend.py` for behaviour, `factory.py` for index types, `files.py` for the on-disk layout.
"""

from ret2_plugin.extras import require

require("faiss", "the FAISS index backend")  # else a one-line error naming the extra to install

from . import files, gpu
from .backend import SIMILARITIES, FaissBackend
from .factory import default_index_type
from .files import ConcurrentWriteError, IndexCorruptedError

__all__ = [
    "ConcurrentWriteError",
    "FaissBackend",
    "IndexCorruptedError",
    "SIMILARITIES",
    "default_index_type",
    "files",
    "gpu",
]
