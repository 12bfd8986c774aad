"""The `ret2` CLI sees the third-party plugin: `ret2 plugins` names it with its distribution, and
`ret2 index` / `ret2 search --backend toy` run on its backend (in-process, through `cli.main`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ret2_plugin.integrations.memory import InMemoryBackend

cli = pytest.importorskip("ret2_plugin.app.cli")

pytestmark = pytest.mark.unit


def test_ret2_plugins_lists_the_plugin_and_its_distribution(
    load_plugins_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    assert cli.main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["index_backends"]["toy"] == "toy-ret2-backend 0.1.0"
    assert listed["image_loaders"]["toy"] == "toy-ret2-backend 0.1.0"
    assert listed["index_backends"]["faiss"] == "ret2-plugin (built-in)"
    assert cli.main(["plugins"]) == 0
    assert any(line.split()[:2] == ["toy", "toy-ret2-backend"] for line in capsys.readouterr().out.splitlines())


def test_ret2_plugins_without_plugins(load_plugins_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", "")
    assert cli.main(["plugins", "--json"]) == 0
    assert "toy" not in json.loads(capsys.readouterr().out)["index_backends"]


def test_ret2_index_and_search_on_the_plugin_backend(
    load_plugins_env: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    Image.new("RGB", (24, 24), (200, 30, 30)).save(tmp_path / "red.png")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps(item)
            for item in (
                {"id": "heron", "text": "a great blue heron", "meta": {"kind": "bird"}},
                {"id": "stamp", "text": "an old postage stamp", "meta": {"kind": "paper"}},
                {"id": "red", "image": "red.png", "meta": {"kind": "colour"}},
            )
        )
        + "\n"
    )
    location = f"cli-toy-{tmp_path.name}"
    try:
        assert (
            cli.main(
                [
                    "index",
                    str(corpus),
                    "--index",
                    location,
                    "--backend",
                    "toy",
                    "--model",
                    str(tiny_model_dir),
                    "--json",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["count"] == 3
        assert (
            cli.main(
                ["search", "--index", location, "--backend", "toy", "--text", "a great blue heron", "-k", "2", "--json"]
            )
            == 0
        )
        results = json.loads(capsys.readouterr().out)["results"]
        assert results[0]["id"] == "heron" and len(results) == 2
        assert (
            cli.main(
                ["search", "--index", location, "--backend", "toy", "--image", str(tmp_path / "red.png"), "--json"]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "red"
    finally:
        InMemoryBackend.drop(location)


def test_ret2_index_and_search_with_a_plugin_encoder(
    load_plugins_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A third-party encoder (no ReT model inside) chosen with `--encoder`, through the
    `register_encoders` hook; the index records it, so `ret2 search` needs no flag."""
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    corpus = tmp_path / "corpus.jsonl"
    texts = {"heron": "a great blue heron", "stamp": "an old postage stamp", "red": "red colour"}
    corpus.write_text("\n".join(json.dumps({"id": k, "text": v}) for k, v in texts.items()) + "\n")
    index = tmp_path / "idx"
    assert (
        cli.main(["index", str(corpus), "--index", str(index), "--encoder", "toy-bow", "--model", "7", "--json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 3 and summary["model"] == "7"
    from ret2_plugin.search import open_index

    info = open_index("faiss", str(index)).info
    assert info["encoder"] == "toy-bow" and info["embedding_dim"] == 16 and info["multi_vector"] is False
    for query, expected in (("an old postage stamp", "stamp"), ("blue heron", "heron")):
        assert cli.main(["search", "--index", str(index), "--text", query, "-k", "3", "--json"]) == 0
        results = json.loads(capsys.readouterr().out)["results"]
        assert results[0]["id"] == expected
        if query == "an old postage stamp":
            assert results[0]["score"] == pytest.approx(1.0, abs=1e-5)  # same text, same bag of words
    # a plugin encoder needs its model named
    assert cli.main(["index", str(corpus), "--index", str(tmp_path / "other"), "--encoder", "toy-bow"]) != 0


def test_unknown_encoder_lists_the_registered_ones(
    load_plugins_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    (tmp_path / "c.jsonl").write_text('{"id": "a", "text": "a"}\n')
    assert (
        cli.main(
            ["index", str(tmp_path / "c.jsonl"), "--index", str(tmp_path / "i"), "--encoder", "nope", "--model", "x"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown encoder 'nope'" in err and "toy-bow" in err and "ret2" in err


def test_unknown_backend_on_the_command_line_lists_plugins(
    load_plugins_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    assert cli.main(["search", "--index", "x", "--backend", "nope", "--text", "q"]) == 2
    err = capsys.readouterr().err
    assert "unknown index backend 'nope'" in err and "toy" in err and "faiss" in err


def test_installed_ret2_command_lists_the_plugin(toy_site: Path) -> None:
    """The console script in a fresh process finds the plugin through its entry point."""
    ret2 = Path(sys.executable).with_name("ret2")
    if not ret2.exists():
        pytest.skip("ret2 console script not installed")
    env = {k: v for k, v in os.environ.items() if k != "RET2_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(toy_site)
    out = subprocess.run(
        [str(ret2), "plugins", "--json"], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout)["index_backends"]["toy"] == "toy-ret2-backend 0.1.0"
