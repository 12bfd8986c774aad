"""The one precision vocabulary, for the encoder loader, the Haystack components and the trainer.

Canonical names: "fp32", "fp16", "bf16" (the weights' / autocast dtype) and "int8" (CPU dynamic
quantisation of the Linear layers: int8 weights, activations quantised on the fly; inference only).
Aliases accepted everywhere: "float32", "float16", "bfloat16" (any case). Nothing else is accepted,
so a typo fails loudly instead of silently running in fp32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16", "int8")
ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
TRAINING = ("fp32", "fp16", "bf16")  # int8 dynamic quantisation has no backward pass


def canonical(name: str, *, training: bool = False) -> Precision:
    """`"bfloat16"` -> `"bf16"`; ValueError naming the accepted names for anything else."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    allowed = TRAINING if training else PRECISIONS
    if key not in allowed:
        accepted = ", ".join([*allowed, *ALIASES])
        what = "training precision" if training else "precision"
        raise ValueError(
            f"{what} must be one of {accepted}; got {name!r}"
            + (" (int8 is dynamic quantisation for CPU inference only)" if key == "int8" else "")
        )
    return key  # type: ignore[return-value]


def torch_dtype(name: str) -> torch.dtype:
    """The floating dtype of the weights / autocast for `name` (int8 models keep fp32 outside Linear)."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}[
        canonical(name)
    ]


def apply(model: Any, name: str, *, device: Any = None) -> Any:
    """Put an inference model in precision `name` (in place where possible; returns the model).

    fp16 / bf16 cast the weights; int8 swaps every `nn.Linear` for a dynamically quantised one, which
    only runs on CPU (a ValueError otherwise)."""
    import torch

    precision = canonical(name)
    if precision in ("fp16", "bf16"):
        return model.to(torch_dtype(precision))
    if precision == "int8":
        where = str(device) if device is not None else _device_of(model)
        if not where.startswith("cpu"):
            raise ValueError(f"int8 (dynamic quantisation) runs on CPU only; the model is on {where}")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's deprecation notice for quantized tensors
            torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def _device_of(model: Any) -> str:
    for parameter in model.parameters():
        return str(parameter.device)
    return "cpu"
