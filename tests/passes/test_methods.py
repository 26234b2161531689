"""The calibrated methods on single layers: GPTQ against a plain reference,
AWQ's and SparseGPT's errors against the plain methods they replace, exact
densities and n:m patterns."""

from __future__ import annotations

import pytest

from tests.passes.helpers import torch

from strata.passes.methods.awq import awq_clip, awq_scale, awq_scale_at
from strata.passes.methods.gptq import gptq
from strata.passes.methods.grid import Grid
from strata.passes.methods.smoothquant import smooth_scale
from strata.passes.methods.sparsegpt import sparsegpt


def _layer(out=48, d_in=64, rows=512, seed=0):
    """A weight, inputs with correlated channels and a few outliers, and H = 2 X^T X / n."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, d_in, generator=g, dtype=torch.float64) @ torch.randn(d_in, d_in, generator=g,
                                                                                dtype=torch.float64)
    X[:, :3] *= 8
    W = torch.randn(out, d_in, generator=g, dtype=torch.float64)
    return W, X, 2 * X.T @ X / rows


def reference_gptq(W, H, grid, act_order=False, damp=0.01, params=None):
    """GPTQ as the OBS update written out (Frantar et al. 2022, eq. 2-3): after
    each column, the remaining columns take its error through H^-1, and H^-1
    loses that column by Gaussian elimination.  No Cholesky, no lazy blocks.
    params: how a group's (scale, zero) is found (default its min and max)."""
    W, H = W.clone().double(), H.clone().double()
    n = W.shape[1]
    k = grid.columns(n)
    params_of = params or grid.params
    order = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(n)
    fixed = [params_of(W[:, c:c + k]) for c in range(0, n, k)]
    H = H + damp * torch.diag(H).mean() * torch.eye(n, dtype=H.dtype)
    Hinv = torch.linalg.inv(H)
    Q = torch.zeros_like(W)
    params = fixed[0]
    for step, j in enumerate(order.tolist()):
        if act_order or grid.group is None:
            params = fixed[j // k]
        elif j % k == 0:  # a group starts: its scale from the weights as they are now
            params = params_of(W[:, j:j + k])
        q = grid.fake(W[:, j:j + 1], *params)
        Q[:, j] = q[:, 0]
        err = (W[:, j:j + 1] - q) / Hinv[j, j]
        rest = order[step + 1:]
        W[:, rest] -= err @ Hinv[j:j + 1, rest]
        Hinv = Hinv - Hinv[:, j:j + 1] @ Hinv[j:j + 1, :] / Hinv[j, j]
    return Q


def _out_err(X, W, V):
    return float((X @ (W - V).T).norm() / (X @ W.T).norm())


def test_gptq_reproduces_the_reference():
    W, X, H = _layer()
    for scheme, group, act_order in [("int4_weight", 32, False), ("int4_weight", 32, True),
                                     ("int8_weight", None, False), ("int8_weight", None, True)]:
        grid = Grid(scheme, group)
        got = gptq(W, H, grid, act_order=act_order)
        ref = reference_gptq(W, H, grid, act_order)
        same = (got.weight - ref).abs() < 1e-9
        assert same.float().mean() > 0.995, (scheme, act_order, same.float().mean())
        # on the grid: the integers, scales and zeros decode to the weight
        assert got.q.min() >= grid.qmin and got.q.max() <= grid.qmax
        rtn = grid.rtn(W).weight
        assert _out_err(X, W, got.weight) < _out_err(X, W, rtn)


def _mse_search(grid, w):
    """The reference Quantizer(mse=True)'s search written out: 80 shrinks of the range,
    the one of least sum |error|^2.4 per row, 1 on ties."""
    best, out = None, None
    for i in range(80):
        s, z = grid.params(w * (1 - i / 100))
        err = (grid.fake(w, s, z) - w).abs().float().pow(2.4).sum(1)
        if best is None:
            best, out = err, (s.clone(), None if z is None else z.clone())
            continue
        better = err < best
        best = torch.where(better, err, best)
        out[0][better] = s[better]
        if z is not None:
            out[1][better] = z[better]
    return out


def test_gptq_mse_observer_shrinks_each_range_to_the_least_rounding_error():
    W, X, H = _layer()
    W[::5, 7] *= 6  # a few large weights stretch their rows' ranges
    for scheme, group in [("int4_weight", 32), ("int8_weight", None)]:
        grid = Grid(scheme, group)
        k = grid.columns(W.shape[1])
        for c in range(0, W.shape[1], k):
            w = W[:, c:c + k]
            (s0, z0), (s1, z1) = grid.params(w), grid.mse_params(w)
            ref = _mse_search(grid, w)
            assert torch.equal(s1, ref[0]) and (z1 is None or torch.equal(z1, ref[1]))

            def err(s, z, w=w):
                return (grid.fake(w, s, z) - w).abs().pow(2.4).sum(1)
            assert (err(s1, z1) <= err(s0, z0)).all() and (err(s1, z1) < err(s0, z0)).any()
            assert (s1 <= s0).all()  # shrunk, never widened
        for act_order in (False, True):
            got = gptq(W, H, grid, act_order=act_order, observer="mse")
            want = reference_gptq(W, H, grid, act_order, params=grid.mse_params)
            assert ((got.weight - want).abs() < 1e-9).float().mean() > 0.995, (scheme, act_order)
            assert got.q.min() >= grid.qmin and got.q.max() <= grid.qmax
            plain = gptq(W, H, grid, act_order=act_order)
            assert not torch.equal(got.weight, plain.weight)


def test_awq_scales_lower_the_error_of_rounding():
    W, X, _ = _layer(d_in=64)
    grid = Grid("int4_weight", 32)
    s, alpha, err, rtn = awq_scale([W.float()], X.float(), X.abs().mean(0), grid)
    assert alpha > 0 and err < rtn
    ours = grid.rtn(W.float() * s.float()).weight / s.float()
    assert _out_err(X.float(), W.float(), ours) < _out_err(X.float(), W.float(), grid.rtn(W.float()).weight)


def test_awq_clip_lowers_the_error_of_rounding():
    W, X, _ = _layer(d_in=64)
    W = W.float()
    W[::5, 7] *= 6  # a few large weights stretch their groups' ranges
    grid = Grid("int4_weight", 32)
    clipped, err, plain = awq_clip(W, X.float(), grid)
    assert err < plain and (clipped.abs() <= W.abs()).all() and not torch.equal(clipped, W)
    rtn = grid.rtn(W).weight
    assert _out_err(X.float(), W, grid.rtn(clipped).weight) < _out_err(X.float(), W, rtn)


def test_smoothquant_scale_moves_the_range_into_the_weights():
    W, X, _ = _layer()
    s = smooth_scale([W], X.abs().amax(0), 0.5)
    assert torch.allclose((X / s) @ (W * s).T, X @ W.T)  # exact in float
    ratio = lambda v: float(v.max() / v.median())  # noqa: E731
    assert ratio((X / s).abs().amax(0)) < ratio(X.abs().amax(0))  # outlier channels flattened


def _magnitude_err(W, X, amount=None, nm=None):
    if nm:
        groups = W.abs().view(W.shape[0], -1, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, groups.topk(2, dim=2).indices, True)
        return _out_err(X, W, W * keep.view_as(W))
    keep = torch.ones(W.numel(), dtype=torch.bool)
    keep[W.abs().flatten().argsort()[:int(W.numel() * amount)]] = False
    return _out_err(X, W, W * keep.view_as(W))


def test_sparsegpt_exact_density_and_smaller_error():
    W, X, H = _layer(out=37, d_in=200)  # odd sizes: the count is still exact
    for amount in (0.5, 0.3):
        pruned, keep = sparsegpt(W, H, amount)
        assert int((~keep).sum()) == int(W.numel() * amount) == int((pruned == 0).sum())
        assert _out_err(X, W, pruned) <= _magnitude_err(W, X, amount)
    pruned, keep = sparsegpt(W, H, 0.5, nm=(2, 4))
    assert (keep.view(37, -1, 4).sum(2) == 2).all() and ((pruned != 0) == keep).all()
    assert _out_err(X, W, pruned) <= _magnitude_err(W, X, nm=True)


def test_awq_at_a_modules_output_is_awq_when_the_module_is_the_linear():
    """awq_scale_at with the module being the linear itself searches the same
    loss as awq_scale: the same alpha and errors."""
    W, X, _ = _layer(d_in=64)
    W, X = W.float(), X.float()
    grid = Grid("int4_weight", 32)
    a = awq_scale([W], X, X.abs().mean(0), grid)
    b = awq_scale_at({"lin": W}, X.abs().mean(0), grid, lambda r: X @ r.get("lin", W).T)
    assert a[1] == b[1] and torch.equal(a[0], b[0])
    assert b[2] == pytest.approx(a[2], rel=1e-4) and b[3] == pytest.approx(a[3], rel=1e-4)
