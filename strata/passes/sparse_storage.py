"""How a masked linear is stored in a compressed checkpoint: its kept weights in
compressed-tensors' bitmask layouts, or dense when those would not be smaller.
Torch-free, so `strata summary` counts the same bytes the file holds.

Per pruned float linear NAME with weight [rows, cols] (compressed-tensors' names):

    sparse-bitmask       NAME.compressed   float [kept]            the kept weights, row by row
      (unstructured)     NAME.bitmask      uint8 [rows, ceil(cols / 8)]   1 = kept, bit j of byte b
                                                                   is column 8 b + j (little-endian)
                         NAME.row_offsets  int64 [rows]            where each row starts in .compressed
                         NAME.shape        int64 [2]               [rows, cols]
    sparse-24-bitmask    NAME.compressed   float [rows, cols / 2]  2 of every 4 kept
      (2:4)              NAME.bitmask      uint8 [rows, ceil(cols / 8)]
                         NAME.shape        int64 [2, 1]

`kept` is not read off the weights but fixed by the prune that made them (the
count its mask keeps: `kept_count`), so the spec alone says the file's size; a
layer whose weights hold fewer non-zeros (a kept weight that is exactly 0)
stores some zeros as kept.

    >>> layout_bytes("sparse-bitmask", 64, 64, 2048), 4 * 64 * 64
    (9232, 16384)
"""

from __future__ import annotations

__all__ = ["BITMASK", "BITMASK_24", "KEPT", "kept_count", "layout_bytes", "sparse_layout"]

BITMASK, BITMASK_24 = "sparse-bitmask", "sparse-24-bitmask"
KEPT = "kept_weights"  # a masked linear's attr: how many weights its one mask keeps


def kept_count(method: str, rows: int, cols: int, amount: float, pattern: str | None = None) -> int:
    """How many of a [rows, cols] weight's entries a prune mask keeps: magnitude
    (scope=layer) and unstructured SparseGPT remove int(amount * rows * cols) in all;
    Wanda int(amount * cols) in each row; n:m patterns half.

    >>> kept_count("magnitude", 3, 10, 0.25), kept_count("wanda", 3, 10, 0.25), kept_count("2:4", 4, 8, 0.5)
    (23, 24, 16)
    """
    n = rows * cols
    if method == "2:4" or pattern is not None:
        return n // 2
    if method == "wanda":
        return rows * (cols - int(cols * amount))
    return n - int(n * amount)


def layout_bytes(fmt: str, rows: int, cols: int, kept: int, itemsize: int = 4) -> int:
    """Bytes of one weight [rows, cols] in layout `fmt` with `kept` values of `itemsize`."""
    mask = rows * -(-cols // 8)
    if fmt == BITMASK_24:
        return kept * itemsize + mask + 2 * 8
    return kept * itemsize + mask + rows * 8 + 2 * 8


def sparse_layout(kept: int, rows: int, cols: int, two_four: bool, itemsize: int = 4) -> tuple[str, int] | None:
    """(layout, kept) for a weight [rows, cols] of which a mask keeps `kept` (2 of
    every 4: `two_four`), or None where the layout would not be smaller than dense.

    >>> sparse_layout(2048, 64, 64, False), sparse_layout(16000, 128, 128, False)
    (('sparse-bitmask', 2048), None)
    """
    fmt = BITMASK_24 if two_four and cols % 4 == 0 else BITMASK
    if layout_bytes(fmt, rows, cols, kept, itemsize) >= rows * cols * itemsize:
        return None
    return fmt, kept
