"""The quantize schemes and where their kernels fit: the bits each scheme stores,
and why a linear (int4's group and row tiles) or a device (fp8's compute
capability, int4's cpu / cuda kernels) cannot take one.  `strata.passes.quantize`
marks the linears; this says what its marks can hold.

    >>> int4_unfit({"in": 344, "out": 64}, 128)
    'width 344 is not a multiple of 128'
"""

from __future__ import annotations

__all__ = ["FP8_CAPABILITY", "INT4_MIN_GROUP", "INT4_ROWS", "SCHEMES", "device_problem", "int4_unfit"]

SCHEMES = {"int8_dynamic": ("int8", 8), "int8_static": ("int8", 8), "int8_weight": ("int8", 8),
           "int4_weight": ("int4", 4),
           "fp8": ("fp8", 8)}

# torchao packs int4 weights in tiles of 16 output rows (CPU and CUDA kernels),
# and takes groups of 32..256 inputs: a row of one group (per channel) runs as
# equal groups of 32 or more, so its width must be a multiple of 32.
INT4_ROWS = 16
INT4_MIN_GROUP = 32

# Where each scheme has a kernel (the refusal says why and what to use instead).
FP8_CAPABILITY = (8, 9)


def int4_unfit(attrs: dict, group_size) -> str | None:
    """Why the int4 kernels cannot hold a linear of `attrs` (its in / out) in groups
    of `group_size` (32..256, or "channel"), or None."""
    divisor = INT4_MIN_GROUP if group_size == "channel" else group_size
    if attrs["in"] % divisor:
        return f"width {attrs['in']} is not a multiple of {divisor}" + (
            " (the int4 kernels' smallest group)" if group_size == "channel" else "")
    if attrs["out"] % INT4_ROWS:
        return f"{attrs['out']} outputs is not a multiple of {INT4_ROWS}"
    return None


def device_problem(scheme: str, device) -> str | None:
    """Why `scheme` cannot run on `device` (a torch.device or name), or None."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "meta":
        return None
    if scheme == "fp8":
        if kind != "cuda":
            return (f"fp8 quantization needs a CUDA GPU of compute capability >= 8.9 (Ada, Hopper); "
                    f"this model is on {kind}: use int8_dynamic or int8_weight")
        import torch  # lazy: torch

        cap = torch.cuda.get_device_capability(device)
        if cap < FP8_CAPABILITY:
            return (f"fp8 quantization needs compute capability >= 8.9; this GPU has "
                    f"{cap[0]}.{cap[1]}: use int8_dynamic or int8_weight")
    if scheme == "int4_weight" and kind not in ("cpu", "cuda"):
        return f"int4_weight has kernels for cpu and cuda, not {kind}: use int8_weight"
    return None
