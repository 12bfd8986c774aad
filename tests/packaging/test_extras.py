"""A missing optional dependency is a one-line error naming the extra that installs it, raised where
the feature is first used (library) and printed as one line by the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ret2_plugin.extras import MissingExtraError, require

pytestmark = pytest.mark.unit


def _block(monkeypatch: pytest.MonkeyPatch, module: str, *dependents: str) -> None:
    """Make `module` unimportable (as if not installed) and forget modules that imported it."""
    monkeypatch.setitem(sys.modules, module, None)
    for name in list(sys.modules):
        if any(name == d or name.startswith(d + ".") for d in dependents):
            monkeypatch.delitem(sys.modules, name)


def test_missing_elasticsearch_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ret2_plugin.plugins import get_index_backend

    _block(monkeypatch, "elasticsearch", "ret2_plugin.integrations.elasticsearch")
    with pytest.raises(MissingExtraError) as info:
        get_index_backend("elasticsearch")
    message = str(info.value)
    assert "\n" not in message and "pip install 'ret2-plugin[elasticsearch]'" in message
    assert isinstance(info.value, ModuleNotFoundError)  # code catching ModuleNotFoundError still works


def test_missing_haystack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "haystack", "ret2_plugin.integrations.haystack", "haystack_integrations.components")
    with pytest.raises(MissingExtraError, match=r"pip install 'ret2-plugin\[haystack\]'"):
        import haystack_integrations.components.embedders.ret2  # noqa: F401


def test_missing_matplotlib_fails_before_training_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.loop import Trainer

    _block(monkeypatch, "matplotlib")
    config = TrainConfig(
        model=str(tmp_path / "m"),
        queries=str(tmp_path / "q.jsonl"),
        corpus=str(tmp_path / "c.jsonl"),
        output_dir=str(tmp_path / "o"),
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'ret2-plugin\[train\]'"):
        Trainer(config)


def test_cli_prints_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ret2_plugin.app.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "a red square"}\n')
    _block(monkeypatch, "elasticsearch", "ret2_plugin.integrations.elasticsearch")
    code = main(["index", str(corpus), "--index", "x", "--backend", "elasticsearch", "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("ret2: error: ")
    assert "pip install 'ret2-plugin[elasticsearch]'" in err
    assert main(["plugins"]) == 0
    listed = capsys.readouterr().out
    assert "[unavailable:" in next(line for line in listed.splitlines() if line.strip().startswith("elasticsearch"))


def test_other_import_errors_are_not_disguised() -> None:
    with pytest.raises(ModuleNotFoundError) as info:
        require("json.no_such_submodule")
    assert not isinstance(info.value, MissingExtraError)
    assert require("json").__name__ == "json"
