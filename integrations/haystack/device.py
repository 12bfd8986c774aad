"""`device` for the Haystack components as Haystack's `ComponentDevice` (a plain "cpu" / "cuda:0" string
is accepted too). None leaves the choice to the encoder (CUDA when available), decided at `warm_up`,
so a serialised pipeline does not pin the device of the machine that saved it."""

from __future__ import annotations

from typing import Any

from haystack.utils import ComponentDevice


def as_device(device: ComponentDevice | str | None) -> ComponentDevice | None:
    if device is None or isinstance(device, ComponentDevice):
        return device
    if isinstance(device, str):
        return ComponentDevice.from_str(device)
    raise TypeError(f"device must be a ComponentDevice, a device string or None, got {type(device).__name__}")


def device_to_dict(device: ComponentDevice | None) -> dict[str, Any] | None:
    return None if device is None else device.to_dict()


def device_from_dict(value: Any) -> ComponentDevice | None:
    """Reads what `device_to_dict` wrote, and the plain strings older pipelines hold."""
    return ComponentDevice.from_dict(value) if isinstance(value, dict) else as_device(value)


def torch_device(device: ComponentDevice | None) -> str | None:
    """The torch device string for the encoder (None: the encoder chooses)."""
    if device is None:
        return None
    if device.has_multiple_devices:
        raise ValueError("ReT2 embedders run on one device; got a multi-device ComponentDevice")
    return device.to_torch_str()
