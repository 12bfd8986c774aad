"""A throwaway third-party plugin, `toy-ret2-backend`, published through the real entry-point path.

The fixture writes a module plus a `.dist-info` (METADATA + entry_points.txt declaring group
`ret2_plugin`) into a temp dir and puts that dir on `sys.path`: `importlib.metadata` then sees an
installed distribution exactly as it sees one installed by pip, without touching the shared venv.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ret2_plugin import plugins

TOY_MODULE = '''
"""Toy ret2 plugin: an index backend `toy` (the memory backend under another name), an image
loader for `toy://<colour>` sources and an encoder `toy-bow` (a real sentence-transformers model:
a static bag-of-words embedding over a small vocabulary, no ReT inside)."""
import numpy as np
from PIL import Image

from ret2_plugin import hookimpl
from ret2_plugin.integrations.memory import InMemoryBackend


class ToyBackend(InMemoryBackend):
    name = "toy"


def load_toy_image(source):
    if isinstance(source, str) and source.startswith("toy://"):
        return Image.new("RGB", (8, 8), source[len("toy://"):])
    return None


TOY_WORDS = "[UNK] a an great blue heron old postage stamp red colour kind bird paper".split()


def load_toy_encoder(model, device=None, **kwargs):
    """`model` is a seed (an int as text): the loader hook receives `--model` as given."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TOY_WORDS)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    weights = np.random.default_rng(int(model)).normal(size=(len(TOY_WORDS), 16)).astype("float32")
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device=device or "cpu")


@hookimpl
def register_encoders(register):
    register("toy-bow", load_toy_encoder)


@hookimpl
def register_index_backends(register):
    register("toy", ToyBackend)


@hookimpl
def register_image_loaders(register):
    register("toy", load_toy_image)
'''


def write_distribution(site: Path, dist: str, module: str, source: str, entry_point: str | None = None) -> None:
    """A module and its dist-info, as pip would leave them in site-packages."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[ret2_plugin]\n{entry_point or module} = {module}\n")
    (info / "RECORD").write_text("")


@pytest.fixture(scope="session")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder holding the installed toy plugin; on sys.path for the whole session."""
    site = tmp_path_factory.mktemp("toy-site")
    write_distribution(site, "toy-ret2-backend", "toy_ret2_backend", TOY_MODULE, entry_point="toy")
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("toy_ret2_backend", None)
    plugins.reset()


@pytest.fixture
def load_plugins_env(monkeypatch: pytest.MonkeyPatch, toy_site: Path) -> Iterator[pytest.MonkeyPatch]:
    """Reset the plugin manager before and after a test that sets `RET2_LOAD_PLUGINS` itself."""
    plugins.reset()
    yield monkeypatch
    monkeypatch.undo()
    plugins.reset()
