"""The shared rules: one KEY=VALUE parser, one `Side`, one precision vocabulary, one bounded worker."""

from __future__ import annotations

import threading
import time
import typing

import pytest
import torch

from ret2_plugin import items, precision
from ret2_plugin.kv import parse_pairs
from ret2_plugin.workers import BoundedWorker, Prefetcher

pytestmark = pytest.mark.unit


def test_one_kv_rule_for_cli_flags_and_train_overrides() -> None:
    from ret2_plugin.trainers.config import parse_overrides

    pairs = ["year=2020", 'tag="2020"', "lr=3e-5", "eval-every=null", "name=foo", "on=yes", "list=[1, 2]", "empty="]
    flags = parse_pairs(pairs, "--filter")
    assert flags == {
        "year": 2020,
        "tag": "2020",
        "lr": 3e-5,
        "eval-every": None,
        "name": "foo",
        "on": "yes",
        "list": [1, 2],
        "empty": "",
    }
    overrides = parse_overrides(pairs)
    assert overrides.pop("eval_every") is None and flags.pop("eval-every") is None
    assert overrides == flags  # the same value rule, only config keys normalised
    for bad in ("novalue", "=3"):
        with pytest.raises(ValueError, match=r"--set expects key=value, got"):
            parse_overrides([bad])


def test_one_side() -> None:
    from ret2_plugin.encoder import batching, inputs
    from ret2_plugin.modeling import model
    from ret2_plugin.processing import processor

    assert typing.get_args(items.Side) == items.SIDES == ("query", "document")
    for module in (batching, inputs, model, processor):
        assert module.Side is items.Side


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fp32", "fp32"),
        ("float32", "fp32"),
        ("FP16", "fp16"),
        ("float16", "fp16"),
        ("bfloat16", "bf16"),
        ("bf16", "bf16"),
        ("int8", "int8"),
    ],
)
def test_precision_names(name: str, expected: str) -> None:
    assert precision.canonical(name) == expected


def test_precision_refusals_and_training() -> None:
    from ret2_plugin.trainers.config import TrainConfig

    with pytest.raises(ValueError, match="fp32, fp16, bf16, int8, float32"):
        precision.canonical("half")
    with pytest.raises(ValueError, match="CPU inference only"):
        precision.canonical("int8", training=True)
    base = {"model": "m", "queries": "q", "corpus": "c", "output_dir": "o"}
    assert TrainConfig.load(None, {**base, "precision": "bfloat16"}).precision == "bf16"
    assert TrainConfig.load(None, {**base, "precision": "auto"}).precision == "auto"
    with pytest.raises(ValueError, match="int8"):
        TrainConfig.load(None, {**base, "precision": "int8"})


def test_int8_quantises_linear_layers_on_cpu_only() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.randn(8, 16)
    reference = model(x)
    precision.apply(model, "int8")
    assert "quantized" in type(model[0]).__module__
    assert torch.allclose(model(x), reference, atol=0.05)
    with pytest.raises(ValueError, match="CPU only"):
        precision.apply(torch.nn.Linear(2, 2), "int8", device="cuda:0")
    half = precision.apply(torch.nn.Linear(2, 2), "float16")
    assert half.weight.dtype == torch.float16


def test_load_encoder_speaks_the_vocabulary(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    from ret2_plugin.encoder import load_encoder

    encoder = load_encoder(tiny_model_dir, precision="int8")
    assert any("quantized" in type(m).__module__ for m in encoder.modules())
    assert next(load_encoder(tiny_model_dir, precision="bfloat16").parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        load_encoder(tiny_model_dir, precision="fp8")


def test_prefetcher_is_bounded_ordered_and_raises_where_the_error_was() -> None:
    pulled: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield i

    worker = Prefetcher(source(), depth=3)
    stream = iter(worker)
    assert [next(stream) for _ in range(2)] == [0, 1]
    time.sleep(0.3)
    assert len(pulled) <= 2 + 3 + 1  # consumed + queued + one in hand
    worker.close()
    assert list(stream) == []

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for value in Prefetcher(failing()):
            got.append(value)
    assert got == [1]


def test_bounded_worker_handles_in_order_blocks_and_reports_errors() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def handle(value: int) -> None:
        gate.wait(5)
        seen.append(value)

    worker = BoundedWorker(handle, depth=2)
    submitted = []

    def submit_all() -> None:
        for i in range(6):
            worker.submit(i)
            submitted.append(i)

    thread = threading.Thread(target=submit_all)
    thread.start()
    time.sleep(0.3)
    assert len(submitted) <= 2 + 1 + 1  # queue depth + one in the handler + one blocked put finishing
    gate.set()
    thread.join(5)
    worker.close()
    assert seen == list(range(6))

    def boom(value: int) -> None:
        raise RuntimeError(f"bad {value}")

    failing = BoundedWorker(boom, depth=1)
    for i in range(5):
        failing.submit(i)  # never blocks forever on a failed worker
    with pytest.raises(RuntimeError, match="bad 0"):
        failing.close()
