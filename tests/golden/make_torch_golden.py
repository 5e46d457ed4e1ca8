#!/usr/bin/python3
"""Generates tests/unit/torch_golden.h: PyTorch's outputs and gradients for kiln's ops and
optimizers on fixed inputs, which tests/unit/test_torch_golden.c compares kiln against.

Run from the repository root (or anywhere: paths are taken relative to this file):

    python3 tests/golden/make_torch_golden.py

with a python3 that has PyTorch (the header was made with 1.13; on Debian 12 that is
/usr/bin/python3 with the python3-torch package, so a python3 earlier on PATH, such as a pyenv
one, may need /usr/bin/python3 spelled out).

Every case builds its inputs from torch.manual_seed in float32 with small, odd shapes, runs
PyTorch, and writes each input, output and gradient as a `static const float` array printed
with %.9g (enough digits to round-trip a float), with the shapes and hyper-parameters as
#defines. Projected outputs use loss = sum(y * R) with a fixed R, so the input gradients are
R pulled back through the op. The header is regenerated, never edited by hand.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "unit", "torch_golden.h")
WIDTH = 100

lines = []


def fmt(v):
    s = "%.9g" % v
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"  # keep every literal a floating one
    return s + "f"


def define(name, value):
    lines.append("#define TG_%s %s" % (name.upper(), value))


def array(name, t, ctype="float"):
    """Writes t (any shape) as a flat static const array named tg_<name>."""
    t = t.detach().contiguous().reshape(-1)
    vals = [fmt(float(v)) if ctype == "float" else str(int(v)) for v in t.tolist()]
    lines.append("static const %s tg_%s[%d] = {" % (ctype, name, len(vals)))
    cur = "   "
    for i, v in enumerate(vals):
        # A trailing comma makes clang-format lay a long array out in rows; short ones stay on
        # one line without it.
        piece = " " + v + ("," if i + 1 < len(vals) or len(vals) > 6 else "")
        if len(cur) + len(piece) > WIDTH:
            lines.append(cur)
            cur = "   "
        cur += piece
    lines.append(cur)
    lines.append("};")


def section(title):
    lines.append("")
    comment(title)


def comment(text):
    """A C comment, wrapped to WIDTH."""
    wrapped = textwrap.wrap(text, WIDTH - 3)
    for i, w in enumerate(wrapped):
        lines.append(("/* " if i == 0 else " * ") + w + (" */" if i + 1 == len(wrapped) else ""))


def grads(loss, *ts):
    return torch.autograd.grad(loss, ts)


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def leaf(*shape):
    return rand(*shape).requires_grad_(True)


def project(y):
    """A fixed projection R of y's shape and the scalar loss sum(y * R)."""
    r = rand(*y.shape)
    return r, (y * r).sum()


def case_linear():
    section("linear: y = x W^T + b, x (N, IN), W (OUT, IN), b (OUT); loss = sum(y * R)")
    n, i, o = 3, 5, 4
    define("linear_n", n)
    define("linear_in", i)
    define("linear_out", o)
    x, w, b = leaf(n, i), leaf(o, i), leaf(o)
    y = F.linear(x, w, b)
    r, loss = project(y)
    dx, dw, db = grads(loss, x, w, b)
    for name, t in [("x", x), ("w", w), ("b", b), ("r", r), ("y", y), ("dx", dx), ("dw", dw),
                    ("db", db)]:
        array("linear_" + name, t)


def case_conv():
    section("conv2d: x (N, C, H, W), w (O, C, K, K), stride 2, pad 1, no bias; loss = sum(y * R)")
    n, c, o, h, w_, k, s, p = 2, 3, 4, 7, 6, 3, 2, 1
    for name, v in [("n", n), ("c", c), ("o", o), ("h", h), ("w", w_), ("k", k), ("stride", s),
                    ("pad", p)]:
        define("conv_" + name, v)
    x, w = leaf(n, c, h, w_), leaf(o, c, k, k)
    y = F.conv2d(x, w, None, stride=s, padding=p)
    define("conv_oh", y.shape[2])
    define("conv_ow", y.shape[3])
    r, loss = project(y)
    dx, dw = grads(loss, x, w)
    for name, t in [("x", x), ("w", w), ("r", r), ("y", y), ("dx", dx), ("dw", dw)]:
        array("conv_" + name, t)


def case_pool():
    section("max_pool2d and avg_pool2d (count_include_pad=True), k 3, stride 2, pad 1, on "
            "(N, C, H, W); loss = sum(y * R)")
    n, c, h, w, k, s, p = 2, 3, 7, 7, 3, 2, 1
    for name, v in [("n", n), ("c", c), ("h", h), ("w", w), ("k", k), ("stride", s), ("pad", p)]:
        define("pool_" + name, v)
    x = leaf(n, c, h, w)
    array("pool_x", x)
    ym = F.max_pool2d(x, k, s, p)
    ya = F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True)
    define("pool_oh", ym.shape[2])
    define("pool_ow", ym.shape[3])
    rm, lm = project(ym)
    ra, la = project(ya)
    (dxm,) = grads(lm, x)
    (dxa,) = grads(la, x)
    for name, t in [("max_r", rm), ("max_y", ym), ("max_dx", dxm), ("avg_r", ra), ("avg_y", ya),
                    ("avg_dx", dxa)]:
        array("pool_" + name, t)


def case_gap():
    section("global average pool: y = x.mean((2, 3)), (N, C, H, W) -> (N, C); "
            "loss = sum(y * R)")
    n, c, h, w = 2, 3, 5, 4
    for name, v in [("n", n), ("c", c), ("h", h), ("w", w)]:
        define("gap_" + name, v)
    x = leaf(n, c, h, w)
    y = x.mean((2, 3))
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("gap_" + name, t)


def case_batchnorm():
    section("batchnorm on (N, C, H, W), momentum 0.1, eps 1e-5. Train mode: y and gradients of "
            "sum(y * R), running statistics after that one forward; then eval mode on the same x "
            "with those statistics: y and gradients of sum(y * R_eval)")
    n, c, h, w = 4, 3, 5, 5
    for name, v in [("n", n), ("c", c), ("h", h), ("w", w)]:
        define("bn_" + name, v)
    define("bn_momentum", "0.1f")
    define("bn_eps", "1e-5f")
    x = leaf(n, c, h, w)
    gamma = (1.0 + 0.3 * rand(c)).requires_grad_(True)
    beta = (0.2 * rand(c)).requires_grad_(True)
    rmean0 = 0.5 * rand(c)
    rvar0 = 0.5 + torch.rand(c)
    rmean, rvar = rmean0.clone(), rvar0.clone()
    for name, t in [("x", x), ("gamma", gamma), ("beta", beta), ("running_mean0", rmean0),
                    ("running_var0", rvar0)]:
        array("bn_" + name, t)
    y = F.batch_norm(x, rmean, rvar, gamma, beta, training=True, momentum=0.1, eps=1e-5)
    r, loss = project(y)
    dx, dg, db = grads(loss, x, gamma, beta)
    for name, t in [("r", r), ("y", y), ("dx", dx), ("dgamma", dg), ("dbeta", db),
                    ("running_mean", rmean), ("running_var", rvar)]:
        array("bn_" + name, t)
    ye = F.batch_norm(x, rmean, rvar, gamma, beta, training=False, momentum=0.1, eps=1e-5)
    re, le = project(ye)
    dxe, dge, dbe = grads(le, x, gamma, beta)
    for name, t in [("eval_r", re), ("eval_y", ye), ("eval_dx", dxe), ("eval_dgamma", dge),
                    ("eval_dbeta", dbe)]:
        array("bn_" + name, t)


def case_layernorm():
    section("layernorm over the last axis of (N, D), eps 1e-5; loss = sum(y * R)")
    n, d = 3, 7
    define("ln_n", n)
    define("ln_d", d)
    define("ln_eps", "1e-5f")
    x = leaf(n, d)
    gamma = (1.0 + 0.3 * rand(d)).requires_grad_(True)
    beta = (0.2 * rand(d)).requires_grad_(True)
    y = F.layer_norm(x, (d,), gamma, beta, eps=1e-5)
    r, loss = project(y)
    dx, dg, db = grads(loss, x, gamma, beta)
    for name, t in [("x", x), ("gamma", gamma), ("beta", beta), ("r", r), ("y", y), ("dx", dx),
                    ("dgamma", dg), ("dbeta", db)]:
        array("ln_" + name, t)


def case_activations():
    section("activations on (N, D): gelu (exact, approximate='none'), tanh, sigmoid, "
            "leaky_relu(0.1), softmax(dim=-1); each with its own R, loss = sum(y * R)")
    n, d = 3, 7
    define("act_n", n)
    define("act_d", d)
    define("act_leaky_alpha", "0.1f")
    x = (1.5 * rand(n, d)).requires_grad_(True)
    array("act_x", x)
    fns = [
        ("gelu", lambda t: F.gelu(t, approximate="none")),
        ("tanh", torch.tanh),
        ("sigmoid", torch.sigmoid),
        ("leaky_relu", lambda t: F.leaky_relu(t, 0.1)),
        ("softmax", lambda t: F.softmax(t, dim=-1)),
    ]
    for name, fn in fns:
        y = fn(x)
        r, loss = project(y)
        (dx,) = grads(loss, x)
        array("act_%s_r" % name, r)
        array("act_%s_y" % name, y)
        array("act_%s_dx" % name, dx)


def case_xent():
    section("cross-entropy (mean over N) on logits (N, C) and int labels, with label smoothing "
            "0.1 and without: loss and dlogits")
    n, c = 5, 7
    define("xent_n", n)
    define("xent_c", c)
    define("xent_smoothing", "0.1f")
    x = (2.0 * rand(n, c)).requires_grad_(True)
    labels = torch.tensor([3, 0, 6, 3, 1], dtype=torch.int64)
    array("xent_logits", x)
    array("xent_labels", labels, "int32_t")
    for name, s in [("smooth", 0.1), ("plain", 0.0)]:
        loss = F.cross_entropy(x, labels, reduction="mean", label_smoothing=s)
        (dx,) = grads(loss, x)
        array("xent_%s_loss" % name, loss.reshape(1))
        array("xent_%s_dlogits" % name, dx)


def case_mse():
    section("mse (mean over every element) of pred (N, D) and target: loss, dpred, dtarget")
    n, d = 3, 5
    define("mse_n", n)
    define("mse_d", d)
    p, t = leaf(n, d), leaf(n, d)
    loss = F.mse_loss(p, t, reduction="mean")
    dp, dt = grads(loss, p, t)
    for name, v in [("pred", p), ("target", t), ("loss", loss.reshape(1)), ("dpred", dp),
                    ("dtarget", dt)]:
        array("mse_" + name, v)


def case_embedding():
    section("embedding: table (V, D), int indices (N, L) with a repeated index; "
            "loss = sum(y * R)")
    v, d, n, l = 6, 4, 3, 2
    for name, val in [("v", v), ("d", d), ("n", n), ("l", l)]:
        define("emb_" + name, val)
    table = leaf(v, d)
    idx = torch.tensor([[1, 4], [5, 1], [0, 1]], dtype=torch.int64)
    y = F.embedding(idx, table)
    r, loss = project(y)
    (dt,) = grads(loss, table)
    array("emb_table", table)
    array("emb_indices", idx, "int32_t")
    for name, t in [("r", r), ("y", y), ("dtable", dt)]:
        array("emb_" + name, t)


def case_optim():
    section("optimizers on one parameter of P elements, S steps with gradient grads[s] at step s; "
            "params after each step (S, P). lr and decay as named")
    p, steps = 10, 3
    define("opt_p", p)
    define("opt_steps", steps)
    p0 = rand(p)
    g = rand(steps, p)
    array("opt_p0", p0)
    array("opt_grads", g)
    cases = [
        ("sgd_wd", lambda q: torch.optim.SGD([q], lr=0.1, weight_decay=1e-2)),
        ("sgd_nesterov",
         lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
        ("sgd_dampening", lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9, dampening=0.1)),
        ("adam", lambda q: torch.optim.Adam([q], lr=1e-2, weight_decay=1e-2)),
        ("adamw", lambda q: torch.optim.AdamW([q], lr=1e-2, weight_decay=1e-2)),
    ]
    comment("sgd_wd: SGD(lr 0.1, weight_decay 1e-2); sgd_nesterov: SGD(lr 0.1, momentum 0.9, "
            "nesterov, weight_decay 1e-2); sgd_dampening: SGD(lr 0.1, momentum 0.9, dampening "
            "0.1); adam: Adam(lr 1e-2, weight_decay 1e-2); adamw: AdamW(lr 1e-2, weight_decay "
            "1e-2); Adam(W) with betas (0.9, 0.999) and eps 1e-8")
    for name, make in cases:
        q = p0.clone().requires_grad_(True)
        opt = make(q)
        after = []
        for s in range(steps):
            q.grad = g[s].clone()
            opt.step()
            after.append(q.detach().clone())
        array("opt_%s" % name, torch.stack(after))

    section("clip_grad_norm_(max_norm 1.0) on a gradient of P elements: the norm it returns and "
            "the clipped gradient")
    define("clip_max_norm", "1.0f")
    gc = rand(p)
    q = torch.zeros(p, requires_grad=True)
    q.grad = gc.clone()
    norm = torch.nn.utils.clip_grad_norm_([q], max_norm=1.0)
    array("clip_grad", gc)
    array("clip_norm", norm.reshape(1))
    array("clip_clipped", q.grad)


def case_basic():
    """Appended after the others, so that their inputs (one seeded stream) stay the same."""
    section("matmul: a (N, K) times b (K, M), and a times bt (M, K) transposed; bias_add: x (N, C, "
            "L) + bias (C) along axis 1; add, mul: p, q (N, D); scale by 0.75; relu; each with "
            "its own R, loss = sum(y * R)")
    n, k, m, c, l, d = 3, 5, 4, 4, 3, 6
    for name, v in [("n", n), ("k", k), ("m", m), ("c", c), ("l", l), ("d", d)]:
        define("basic_" + name, v)
    define("basic_scale", "0.75f")
    a, b, bt = leaf(n, k), leaf(k, m), leaf(m, k)
    y = a @ b
    r, loss = project(y)
    da, db = grads(loss, a, b)
    for name, t in [("a", a), ("b", b), ("r", r), ("y", y), ("da", da), ("db", db)]:
        array("mm_" + name, t)
    y = a @ bt.t()
    r, loss = project(y)
    da, dbt = grads(loss, a, bt)
    for name, t in [("bt", bt), ("t_r", r), ("t_y", y), ("t_da", da), ("t_dbt", dbt)]:
        array("mm_" + name, t)
    x, bias = leaf(n, c, l), leaf(c)
    y = x + bias.view(1, c, 1)
    r, loss = project(y)
    dx, dbias = grads(loss, x, bias)
    for name, t in [("x", x), ("bias", bias), ("r", r), ("y", y), ("dx", dx), ("dbias", dbias)]:
        array("bias_" + name, t)
    p, q = leaf(n, d), leaf(n, d)
    array("ew_p", p)
    array("ew_q", q)
    for name, fn in [("add", lambda: p + q), ("mul", lambda: p * q)]:
        y = fn()
        r, loss = project(y)
        dp, dq = grads(loss, p, q)
        for part, t in [("r", r), ("y", y), ("dp", dp), ("dq", dq)]:
            array("%s_%s" % (name, part), t)
    for name, fn in [("scale", lambda t: 0.75 * t), ("relu", F.relu)]:
        y = fn(p)
        r, loss = project(y)
        (dp,) = grads(loss, p)
        for part, t in [("r", r), ("y", y), ("dp", dp)]:
            array("%s_%s" % (name, part), t)

    section("dropout(p 0.25) on x (N, D) with a fixed mask: PyTorch's values for a kept element "
            "(native_dropout_backward with the mask all kept gives the gradient); a dropped "
            "element is 0 in both. The test takes kiln's own mask and compares element by "
            "element; loss = sum(y * R)")
    define("drop_p", "0.25f")
    x = leaf(n, d)
    keep = torch.ones(n, d, dtype=torch.bool)
    scale = 1.0 / (1.0 - 0.25)
    y = x * keep * scale
    r, loss = project(y)
    dx = torch.ops.aten.native_dropout_backward(r, keep, scale)
    for name, t in [("x", x), ("r", r), ("y_kept", y), ("dx_kept", dx)]:
        array("drop_" + name, t)

    section("sum of every element of x (N, D) as the loss: value and dx; reshape (N, 2, 6) -> "
            "(N, 3, 4) and concat of u (N, 2, 3) and v (N, 4, 3) along axis 1, each with its "
            "own R, loss = sum(y * R)")
    x = leaf(n, d)
    y = x.sum()
    (dx,) = grads(y, x)
    for name, t in [("x", x), ("y", y.reshape(1)), ("dx", dx)]:
        array("sum_" + name, t)
    x = leaf(n, 2, 6)
    y = x.reshape(n, 3, 4)
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("reshape_" + name, t)
    u, v = leaf(n, 2, 3), leaf(n, 4, 3)
    y = torch.cat([u, v], dim=1)
    r, loss = project(y)
    du, dv = grads(loss, u, v)
    for name, t in [("u", u), ("v", v), ("r", r), ("y", y), ("du", du), ("dv", dv)]:
        array("concat_" + name, t)


def case_onnx():
    """The ops added for the ONNX importer. Appended after the others, so that their inputs (one
    seeded stream) stay the same."""
    section("sub and div of p, q (N, D), q's magnitudes in [0.5, 1.5) (a divisor away from 0); "
            "clip of x (N, D) to [-0.5, 0.25]; log_softmax of x (N, 2, 6) over the last axis; "
            "each with its own R, loss = sum(y * R)")
    n, d = 3, 6
    define("onnx_n", n)
    define("onnx_d", d)
    define("clip_lo", "-0.5f")
    define("clip_hi", "0.25f")
    p = leaf(n, d)
    q = (torch.rand(n, d) + 0.5) * torch.where(torch.rand(n, d) < 0.5, -1.0, 1.0)
    q.requires_grad_(True)
    array("onnx_p", p)
    array("onnx_q", q)
    for name, fn in [("sub", lambda: p - q), ("div", lambda: p / q)]:
        y = fn()
        r, loss = project(y)
        dp, dq = grads(loss, p, q)
        for part, t in [("r", r), ("y", y), ("dp", dp), ("dq", dq)]:
            array("%s_%s" % (name, part), t)
    x = leaf(n, d)
    y = torch.clamp(x, -0.5, 0.25)
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("clipop_" + name, t)
    x = leaf(n, 2, 6) * 2
    y = F.log_softmax(x, dim=-1)
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("logsm_" + name, t)

    section("transpose of x3 (N, 3, 4) by perm (0, 2, 1) and of x4 (N, 2, 3, 4) by perm "
            "(0, 3, 1, 2); broadcast of a weight w (C, 1, 1) and of an input b (N, 1, H, 1) to "
            "(N, C, H, W); pad2d of x (N, C, H, W) by top 0, bottom 2, left 1, right 0 with "
            "-2.5; each with its own R, loss = sum(y * R)")
    c, h, w_ = 3, 4, 5
    for name, v in [("c", c), ("h", h), ("w", w_)]:
        define("bcast_" + name, v)
    define("pad_top", 0)
    define("pad_bottom", 2)
    define("pad_left", 1)
    define("pad_right", 0)
    define("pad_value", "-2.5f")
    x = leaf(n, 3, 4)
    y = x.permute(0, 2, 1)
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("tr3_" + name, t)
    x = leaf(n, 2, 3, 4)
    y = x.permute(0, 3, 1, 2)
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("tr4_" + name, t)
    wt = leaf(c, 1, 1)
    y = wt.expand(n, c, h, w_)
    r, loss = project(y)
    (dw,) = grads(loss, wt)
    for name, t in [("w", wt), ("r", r), ("y", y), ("dw", dw)]:
        array("bcw_" + name, t)
    b = leaf(n, 1, h, 1)
    y = b.expand(n, c, h, w_)
    r, loss = project(y)
    (db,) = grads(loss, b)
    for name, t in [("b", b), ("r", r), ("y", y), ("db", db)]:
        array("bcx_" + name, t)
    x = leaf(n, 2, 3, 4)
    y = F.pad(x, (1, 0, 0, 2), value=-2.5)
    define("pad_c", 2)
    define("pad_h", 3)
    define("pad_w", 4)
    r, loss = project(y)
    (dx,) = grads(loss, x)
    for name, t in [("x", x), ("r", r), ("y", y), ("dx", dx)]:
        array("pad_" + name, t)


def case_schedule():
    """Deterministic (no random inputs), so its place among the cases does not matter."""
    section("learning-rate schedules: the rate of each of S steps (the one the optimizer's step "
            "uses, from get_last_lr() before scheduler.step()). onecycle: OneCycleLR(max_lr 0.5, "
            "total_steps S, pct_start 0.3, div_factor 25, final_div_factor 1e4, "
            "anneal_strategy 'cos', cycle_momentum False); cosine: CosineAnnealingLR(lr 0.5, "
            "T_max S, eta_min 1e-3)")
    steps = 23
    define("sched_steps", steps)
    define("sched_peak", "0.5f")
    define("sched_pct_start", "0.3f")
    define("sched_div_factor", "25.0f")
    define("sched_final_div_factor", "1e4f")
    define("sched_min_lr", "1e-3f")

    def rates(make):
        q = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([q], lr=0.5)
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return torch.tensor(out, dtype=torch.float64)

    lrs = torch.optim.lr_scheduler
    array("sched_onecycle", rates(lambda o: lrs.OneCycleLR(
        o, max_lr=0.5, total_steps=steps, pct_start=0.3, div_factor=25.0,
        final_div_factor=1e4, anneal_strategy="cos", cycle_momentum=False)))
    array("sched_cosine", rates(lambda o: lrs.CosineAnnealingLR(o, T_max=steps, eta_min=1e-3)))


def main():
    torch.manual_seed(20240613)
    torch.set_num_threads(1)
    lines.append("/* generated by tests/golden/make_torch_golden.py with PyTorch %s; do not edit."
                 % torch.__version__)
    lines.append(" * Regenerate with `python3 tests/golden/make_torch_golden.py`. Arrays are "
                 "row-major and")
    lines.append(" * flat; the #defines give their shapes and the ops' hyper-parameters. */")
    lines.append("#ifndef KILN_TEST_TORCH_GOLDEN_H")
    lines.append("#define KILN_TEST_TORCH_GOLDEN_H")
    lines.append("")
    lines.append("#include <stdint.h>")
    case_linear()
    case_conv()
    case_pool()
    case_gap()
    case_batchnorm()
    case_layernorm()
    case_activations()
    case_xent()
    case_mse()
    case_embedding()
    case_optim()
    case_basic()
    case_onnx()
    case_schedule()
    lines.append("")
    lines.append("#endif")
    text = "\n".join(lines) + "\n"
    for i, ln in enumerate(text.splitlines()):
        if len(ln) > WIDTH:
            sys.exit("line %d is %d columns: %s" % (i + 1, len(ln), ln))
    with open(OUT, "w") as f:
        f.write(text)
    # The repository's style lays the arrays out in aligned columns; without clang-format the
    # header is still valid and within 100 columns, just packed.
    if shutil.which("clang-format"):
        subprocess.run(["clang-format", "-i", OUT], check=True)
    else:
        print("clang-format not found: run `clang-format -i %s`" % os.path.relpath(OUT))
    print("wrote %s (%d bytes)" % (os.path.relpath(OUT), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
