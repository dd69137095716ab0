"""Grid planning: how many 384x384 patches (columns x rows) an image is cut into.

Three rules, all on the candidate grids ``m:n`` (``m`` columns, ``n`` rows, a
canvas of ``m*S`` by ``n*S`` pixels for a patch side ``S``):

* ``relaxed`` -- BlueLM-V's relaxed aspect-ratio matching (paper, Alg. 1).
  Candidates are visited from the largest area to the smallest; among grids of
  the same area the one with **more columns comes first** (3:2 before 2:3,
  2:1 before 1:2; on 20,000 random sizes the other order chose the same grid
  every time, since transposed grids rarely tie on R_e). A candidate is taken
  when its effective resolution ``R_e`` beats the best so far by more than
  ``alpha`` (relative), or is within ``alpha`` of it and wastes less (``R_w``).
* ``llava_next`` -- LLaVA-NeXT's ``select_best_resolution``: the largest
  ``R_e``, ties broken by the smaller ``R_w``, first candidate wins remaining
  ties. Candidates are visited rows-major (1:1, 2:1, 3:1, 1:2, ...), which is
  the order of LLaVA-OneVision's ``image_grid_pinpoints`` ([h, w] with h outer).
* ``internvl`` -- InternVL 1.5's ``find_closest_aspect_ratio``: the grid whose
  aspect ratio is closest to the image's; on a tie the later (larger-area)
  grid wins when the image area exceeds half of that grid's canvas.

``max_side`` defaults to 3 for ``relaxed`` and ``llava_next`` and to no limit
other than ``max_patches`` for ``internvl`` (InternVL has no side limit).

Example:
    >>> from bluelm_cpp.vision import plan_grid
    >>> plan_grid(394, 390)                                  # paper, Table: 1:1
    (1, 1)
    >>> plan_grid(394, 390, method="llava_next")             # LLaVA-NeXT over-enlarges
    (2, 2)
    >>> plan_grid(380, 76, method="internvl", max_patches=6)
    (5, 1)
"""

from __future__ import annotations

from ..errors import InvalidArgumentError

METHODS = ("relaxed", "llava_next", "internvl")


# More patches than any model plans for (LLaVA-OneVision's largest grid is 6x6);
# the candidate search grows with the square of the limits, so bound them.
MAX_GRID_PATCHES = 64


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    return value


def effective_and_wasted(
    width: int, height: int, cols: int, rows: int, side: int
) -> tuple[int, int]:
    """``(R_e, R_w)`` of an image on a ``cols x rows`` canvas of ``side``-pixel patches.

    Example:
        >>> effective_and_wasted(500, 102, 2, 1, 384)
        (51000, 243912)
    """
    cw, ch = cols * side, rows * side
    scale = min(cw / width, ch / height)
    r_e = min(int(width * scale) * int(height * scale), width * height)
    return r_e, cw * ch - r_e


def candidate_grids(max_side: int, max_patches: int, order: str = "area") -> list[tuple[int, int]]:
    """Grids ``(cols, rows)`` with both sides <= ``max_side`` and at most ``max_patches``.

    ``order="area"``: largest area first, more columns first within an area
    (the relaxed rule's order). ``order="rows"``: rows outer, columns inner,
    both ascending (LLaVA-OneVision's pinpoint order).

    Example:
        >>> candidate_grids(2, 4)
        [(2, 2), (2, 1), (1, 2), (1, 1)]
        >>> candidate_grids(2, 4, order="rows")
        [(1, 1), (2, 1), (1, 2), (2, 2)]
    """
    grids = [
        (c, r)
        for r in range(1, max_side + 1)
        for c in range(1, max_side + 1)
        if c * r <= max_patches
    ]
    if order == "rows":
        return grids
    if order != "area":
        raise InvalidArgumentError(f"order must be 'area' or 'rows', got {order!r}")
    return sorted(grids, key=lambda g: (-g[0] * g[1], -g[0]))


def _relaxed(
    w: int, h: int, grids: list[tuple[int, int]], side: int, alpha: float
) -> tuple[int, int]:
    best = grids[-1]
    re_max, rw_min = 0.0, float("inf")
    for cols, rows in grids:
        r_e, r_w = effective_and_wasted(w, h, cols, rows, side)
        if r_e - re_max > alpha * re_max or (re_max - r_e < alpha * re_max and r_w < rw_min):
            best, re_max, rw_min = (cols, rows), r_e, r_w
    return best


def _llava_next(w: int, h: int, grids: list[tuple[int, int]], side: int) -> tuple[int, int]:
    best = grids[0]
    re_max, rw_min = 0, float("inf")
    for cols, rows in grids:
        r_e, r_w = effective_and_wasted(w, h, cols, rows, side)
        if r_e > re_max or (r_e == re_max and r_w < rw_min):
            best, re_max, rw_min = (cols, rows), r_e, r_w
    return best


def _internvl(w: int, h: int, max_patches: int, max_side: int, side: int) -> tuple[int, int]:
    # InternVL builds a set and sorts it by area (stable sort over the set's
    # iteration order); the same construction keeps its tie behaviour.
    ratios = {
        (i, j)
        for n in range(1, max_patches + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if i * j <= max_patches and i <= max_side and j <= max_side
    }
    aspect = w / h
    best, best_diff = (1, 1), float("inf")
    for i, j in sorted(ratios, key=lambda x: x[0] * x[1]):
        diff = abs(aspect - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and w * h > 0.5 * side * side * i * j:
            best = (i, j)
    return best


def plan_grid(
    width: int,
    height: int,
    method: str = "relaxed",
    max_side: int | None = None,
    max_patches: int = 9,
    alpha: float = 0.1,
    patch_side: int = 384,
) -> tuple[int, int]:
    """Choose the patch grid ``(cols, rows)`` for a ``width x height`` image.

    Args:
        width, height: image size in pixels (positive).
        method: ``"relaxed"`` (BlueLM-V), ``"llava_next"`` or ``"internvl"``.
        max_side: most patches along one side (default 3; ``internvl``: no limit).
        max_patches: most patches in the grid (9 in the paper's inference study).
        alpha: the relaxed rule's tolerance (0.1 in the paper).
        patch_side: the encoder's input side (384 for SigLIP so400m).

    Example:
        >>> plan_grid(500, 102)
        (2, 1)
        >>> plan_grid(768, 1536)
        (2, 3)
    """
    _check_positive("width", width)
    _check_positive("height", height)
    _check_positive("max_patches", max_patches)
    _check_positive("patch_side", patch_side)
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    if max_side is None:
        max_side = max_patches if method == "internvl" else 3
    _check_positive("max_side", max_side)
    if max_patches > MAX_GRID_PATCHES or max_side > MAX_GRID_PATCHES:
        raise InvalidArgumentError(
            f"max_patches and max_side must be at most {MAX_GRID_PATCHES}, "
            f"got {max_patches} and {max_side}"
        )
    if not (0.0 <= float(alpha) < 1.0):
        raise InvalidArgumentError(f"alpha must be in [0, 1), got {alpha!r}")
    if method == "internvl":
        return _internvl(width, height, max_patches, max_side, patch_side)
    if method == "llava_next":
        return _llava_next(
            width, height, candidate_grids(max_side, max_patches, "rows"), patch_side
        )
    return _relaxed(
        width, height, candidate_grids(max_side, max_patches, "area"), patch_side, alpha
    )
