"""refine_fast.ops.edge_score against its pure-PyTorch reference, forward and backward."""
import pytest
import torch

import refine_fast  # noqa: F401  (registers the ops)
from refine_fast.ops.edge_score import edge_score, edge_score_reference
from refine_fast.testing import SyncCounter, assert_cuda_graph_safe

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def make_inputs(n_src, n_dst, E, H, G=1, term=False, grouped=False, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)

    edge_index = torch.stack([torch.randint(0, max(n_src, 1), (E,), generator=gen),
                              torch.randint(0, max(n_dst, 1), (E,), generator=gen)]).to(device)
    return dict(
        p_src=randn(n_src, H),
        p_dst=randn(n_dst, H),
        edge_index=edge_index,
        weight=randn(G, H),
        bias=randn(G),
        edge_term=randn(E, H) if term else None,
        group=torch.randint(0, G, (E,), generator=gen).to(device) if grouped else None,
    )


DIFFERENTIABLE = ("p_src", "p_dst", "weight", "bias", "edge_term")


def forward_backward(fn, inputs, grad_out):
    leaves = {k: v.detach().clone().requires_grad_() if k in DIFFERENTIABLE and v is not None else v
              for k, v in inputs.items()}
    out = fn(**leaves)
    out.backward(grad_out)
    grads = {k: leaves[k].grad for k in DIFFERENTIABLE if leaves[k] is not None}
    return out, grads


def assert_matches_reference(inputs, tol):
    """Forward and gradients against the reference evaluated in float64 on the same values;
    weight and bias gradients sum over all edges, so their float32 tolerance grows with sqrt(E)."""
    E = inputs["edge_index"].size(1)
    dtype = inputs["p_src"].dtype
    grad_out = torch.randn(E, dtype=torch.float64).to(inputs["p_src"])
    out, grads = forward_backward(edge_score, inputs, grad_out)
    exact = {k: v.double() if v is not None and v.is_floating_point() else v for k, v in inputs.items()}
    ref, ref_grads = forward_backward(edge_score_reference, exact, grad_out.double())
    torch.testing.assert_close(out, ref.to(dtype), **tol)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        t = dict(tol)
        if name in ("weight", "bias"):
            t["atol"] = tol["atol"] * (1 + E**0.5 / 10)
        torch.testing.assert_close(grads[name], ref_grads[name].to(dtype), **t, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [(1, 1, 1, 1), (5, 7, 12, 3), (50, 40, 300, 16), (64, 90, 2000, 33), (300, 200, 20000, 64)])
@pytest.mark.parametrize("term", [False, True])
@pytest.mark.parametrize("G,grouped", [(1, False), (3, False), (4, True)])
def test_matches_reference(device, dtype, sizes, term, G, grouped):
    n_src, n_dst, E, H = sizes
    inputs = make_inputs(n_src, n_dst, E, H, G, term, grouped, dtype, device, seed=E + H)
    assert_matches_reference(inputs, TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(device, dtype):
    inputs = make_inputs(30, 20, 500, 24, 2, True, True, torch.float32, device)
    half = {k: v.to(dtype) if v is not None and v.is_floating_point() else v for k, v in inputs.items()}
    out = edge_score(**half)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), edge_score_reference(**inputs), rtol=2e-2, atol=5e-2)
    grad_out = torch.randn(500, device=device)
    _, grads = forward_backward(edge_score, half, grad_out.to(dtype))
    _, ref_grads = forward_backward(edge_score_reference, inputs, grad_out)
    for name in grads:
        assert grads[name].dtype == dtype
        torch.testing.assert_close(grads[name].float(), ref_grads[name], rtol=2e-2, atol=1e-1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("term", [False, True])
def test_no_edges(device, term):
    for n_src, n_dst in ((6, 4), (0, 0)):
        inputs = make_inputs(n_src, n_dst, 0, 8, 2, term, True, device=device)
        out, grads = forward_backward(edge_score, inputs, torch.empty(0, device=device))
        assert out.shape == (0,)
        for name, grad in grads.items():
            assert grad.shape == inputs[name].shape
            assert not grad.any(), name


@pytest.mark.parametrize("device", DEVICES)
def test_nodes_without_edges_get_zero_gradient(device):
    inputs = make_inputs(10, 10, 20, 5, device=device)
    inputs["edge_index"] = inputs["edge_index"] % 5  # nodes 5..9 have no edges
    _, grads = forward_backward(edge_score, inputs, torch.ones(20, device=device))
    assert not grads["p_src"][5:].any() and not grads["p_dst"][5:].any()
    assert_matches_reference(inputs, TOL[torch.float32])


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    base = make_inputs(40, 30, 500, 12, 3, True, True, device=device, seed=3)
    proj = torch.cat([base["p_src"], torch.randn(40, 12, device=device)], dim=1)
    inputs = dict(
        p_src=proj[:, :12],  # rows with a stride of 24
        p_dst=base["p_dst"].t().contiguous().t(),  # column-major
        edge_index=base["edge_index"].t().contiguous().t(),  # [E, 2] transposed
        weight=base["weight"].t().contiguous().t(),
        bias=torch.stack([base["bias"], base["bias"]], dim=1)[:, 0],  # stride 2
        edge_term=torch.stack([base["edge_term"], base["edge_term"]], dim=2)[:, :, 0],  # channel stride 2
        group=torch.stack([base["group"], base["group"]], dim=1)[:, 1],
    )
    assert not any(v.is_contiguous() for v in inputs.values())
    assert_matches_reference(inputs, TOL[torch.float32])
    torch.testing.assert_close(edge_score(**inputs), edge_score(**base))


def test_deterministic_across_thread_counts():
    inputs = make_inputs(500, 400, 60000, 32, 3, True, True, seed=7)
    grad_out = torch.randn(60000)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(forward_backward(edge_score, inputs, grad_out))
    finally:
        torch.set_num_threads(threads)
    (out1, grads1), (out2, grads2) = results
    assert torch.equal(out1, out2)
    for name in grads1:
        assert torch.equal(grads1[name], grads2[name]), name


def test_nan_propagates():
    inputs = make_inputs(4, 4, 6, 3)
    inputs["edge_index"] = torch.tensor([[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 3, 2]])
    inputs["p_src"][1, 2] = float("nan")
    out = edge_score(**inputs)
    assert out.isnan().tolist() == [False, True, False, False, False, True]


@pytest.mark.parametrize("term", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
def test_gradcheck(term, grouped):
    inputs = make_inputs(6, 5, 15, 4, 3, term, grouped, torch.float64, seed=11)
    names = [k for k in DIFFERENTIABLE if inputs[k] is not None]
    leaves = [inputs[k].requires_grad_() for k in names]

    def fn(*tensors):
        return edge_score(**{**inputs, **dict(zip(names, tensors))})

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("term", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("E", [0, 25])
def test_opcheck(device, term, grouped, E):
    inputs = make_inputs(6, 5, E, 4, 3, term, grouped, device=device, seed=5)
    for k in DIFFERENTIABLE:
        if inputs[k] is not None:
            inputs[k].requires_grad_()
    args = tuple(inputs[k] for k in ("p_src", "p_dst", "edge_index", "weight", "bias", "edge_term", "group"))
    torch.library.opcheck(torch.ops.refine_fast.edge_score.default, args)


def test_backward_op_opcheck():
    inputs = make_inputs(6, 5, 25, 4, 3, True, True, seed=5)
    args = (torch.randn(25), inputs["p_src"], inputs["p_dst"], inputs["edge_index"], inputs["weight"],
            inputs["edge_term"], inputs["group"])
    torch.library.opcheck(torch.ops.refine_fast.edge_score_backward.default, args)
    grads = torch.ops.refine_fast.edge_score_backward(*args[:5], None, None)
    assert grads[2].shape == (0,)  # no edge_term: empty gradient


def test_compiles():
    inputs = make_inputs(20, 20, 100, 8, 2, True, True)
    compiled = torch.compile(edge_score, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(**inputs), edge_score(**inputs))


def _bad(**changes):
    inputs = make_inputs(6, 5, 10, 4, 3, True, True)
    inputs.update(changes)
    return inputs


BAD_INPUTS = [
    (dict(edge_index=torch.zeros(2, 10, dtype=torch.int32)), r"edge_index must be int64 of shape \[2, E\]"),
    (dict(edge_index=torch.zeros(3, 10, dtype=torch.long)), r"edge_index must be int64 of shape \[2, E\]"),
    (dict(edge_index=torch.tensor([[0] * 9 + [6], [0] * 10])),
     r"edge_index\[0\] \(source nodes\) must be in \[0, 6\), got 6 at edge 9"),
    (dict(edge_index=torch.tensor([[0] * 10, [0] * 9 + [-1]])),
     r"edge_index\[1\] \(target nodes\) must be in \[0, 5\), got -1 at edge 9"),
    (dict(group=torch.full((10,), 3)), r"group must be in \[0, 3\), got 3 at edge 0"),
    (dict(group=torch.zeros(10, dtype=torch.int32)), r"group must be int64 of shape \[E = 10\]"),
    (dict(group=torch.zeros(9, dtype=torch.long)), r"group must be int64 of shape \[E = 10\]"),
    (dict(p_src=torch.randn(6)), r"p_src must be a 2-D floating tensor"),
    (dict(p_src=torch.zeros(6, 4, dtype=torch.long)), r"p_src must be a 2-D floating tensor"),
    (dict(p_dst=torch.randn(5, 5)), r"p_dst must have shape \[N_dst, H = 4\]"),
    (dict(p_dst=torch.randn(5, 4, dtype=torch.float64)), r"p_dst must have the dtype of p_src"),
    (dict(weight=torch.randn(3, 5)), r"weight must have shape \[G, H = 4\]"),
    (dict(bias=torch.randn(2)), r"bias must have shape \[G = 3\]"),
    (dict(edge_term=torch.randn(10, 3)), r"edge_term must have shape \[E = 10, H = 4\]"),
    (dict(edge_term=torch.randn(10, 4, dtype=torch.float64)), r"edge_term must have the dtype of p_src"),
    (dict(weight=torch.randn(0, 4), bias=torch.randn(0), group=None), r"weight must have at least one row"),
]


@pytest.mark.parametrize("changes,message", BAD_INPUTS)
def test_bad_inputs(changes, message):
    with pytest.raises(RuntimeError, match=r"edge_score \(CPU\): " + message):
        edge_score(**_bad(**changes))


def test_bad_backward_inputs():
    inputs = make_inputs(6, 5, 10, 4)
    with pytest.raises(RuntimeError, match=r"edge_score_backward \(CPU\): grad must have shape \[E = 10\]"):
        torch.ops.refine_fast.edge_score_backward(torch.randn(9), inputs["p_src"], inputs["p_dst"],
                                                  inputs["edge_index"], inputs["weight"], None, None)


@pytest.mark.parametrize("threads", [1, 2])
def test_bad_index_names_the_first_bad_edge(threads):
    # Checked inside the kernels (no separate pass, no host sync): the lowest bad edge is named,
    # whatever the thread count, in the forward and in a direct call of the backward op.
    inputs = make_inputs(60, 50, 20000, 8, 3, True, True, seed=2)
    inputs["edge_index"][0, 15000] = 60
    inputs["edge_index"][1, 9000] = -1
    inputs["group"][12000] = 3
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        message = r"edge_index\[1\] \(target nodes\) must be in \[0, 50\), got -1 at edge 9000"
        with pytest.raises(RuntimeError, match=r"edge_score \(CPU\): " + message):
            edge_score(**inputs)
        with pytest.raises(RuntimeError, match=r"edge_score_backward \(CPU\): " + message):
            torch.ops.refine_fast.edge_score_backward(torch.randn(20000), inputs["p_src"], inputs["p_dst"],
                                                      inputs["edge_index"], inputs["weight"], inputs["edge_term"],
                                                      inputs["group"])
    finally:
        torch.set_num_threads(previous)


def test_no_host_sync():
    # No op that would make a GPU wait for the host, in the forward or the backward (counted on the
    # CPU: the same C++ front code runs for CUDA).
    inputs = make_inputs(50, 40, 300, 16, 3, True, True)
    with SyncCounter() as syncs:
        forward_backward(edge_score, inputs, torch.randn(300))
    assert syncs.count == 0, syncs.ops


ARGUMENTS = ("p_src", "p_dst", "edge_index", "weight", "bias", "edge_term", "group")


@pytest.mark.parametrize("name", ARGUMENTS)
def test_argument_on_meta_is_refused(name):
    # One argument on meta sends the call to the fake kernel, which must not return uninitialized
    # memory on the others' device.
    cpu = make_inputs(6, 5, 10, 4, 3, True, True)
    inputs = {**cpu, name: cpu[name].to("meta")}
    expected = (r"p_dst must be on the device of p_src \(meta\), got cpu" if name == "p_src"
                else rf"{name} must be on the device of p_src \(cpu\), got meta")
    with pytest.raises(RuntimeError, match=r"edge_score: " + expected):
        edge_score(**inputs)
    if name != "bias":
        if name == "p_src":
            expected = expected.replace("p_dst", "grad")  # the backward checks grad second
        with pytest.raises(RuntimeError, match=r"edge_score_backward: " + expected):
            torch.ops.refine_fast.edge_score_backward(torch.randn(10), *(inputs[k] for k in ARGUMENTS if k != "bias"))
    with pytest.raises(RuntimeError, match=r"edge_score_backward: grad must be on the device of p_src \(cpu\)"):
        torch.ops.refine_fast.edge_score_backward(torch.randn(10, device="meta"),
                                                  *(cpu[k] for k in ARGUMENTS if k != "bias"))


def test_all_meta_gives_shapes():
    inputs = {k: v.to("meta") for k, v in make_inputs(6, 5, 10, 4, 3, True, True).items()}
    out = edge_score(**inputs)
    assert out.device.type == "meta" and out.shape == (10,)


def test_csr_order():
    # The order of the CUDA backward's segmented sums: a stable sort by index, with the CSR pointers.
    gen = torch.Generator().manual_seed(0)
    for size, E in [(0, 0), (1, 5), (7, 0), (50, 1000), (3000, 2000)]:
        index = torch.randint(0, max(size, 1), (E,), generator=gen)
        ptr, perm = torch.ops.refine_fast.csr_order(index, size)
        counts = torch.bincount(index, minlength=size)[:size]
        assert torch.equal(ptr, torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]))
        assert torch.equal(perm, torch.sort(index, stable=True).indices)
        for v in range(min(size, 20)):
            edges = perm[ptr[v]:ptr[v + 1]]
            assert (index[edges] == v).all() and (edges.diff() > 0).all()


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@CUDA
def test_cuda_mixed_devices():
    inputs = make_inputs(6, 5, 10, 4, device="cuda")
    inputs["edge_index"] = inputs["edge_index"].cpu()
    with pytest.raises(RuntimeError, match=r"edge_index must be on the device of p_src"):
        edge_score(**inputs)
    inputs["edge_index"] = inputs["edge_index"].to("meta")
    with pytest.raises(RuntimeError, match=r"edge_score: edge_index must be on the device of p_src \(cuda:0\)"):
        edge_score(**inputs)


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hub", [False, True])
def test_cuda_backward_is_deterministic(dtype, hub):
    # Segmented sums instead of float atomics: two runs give the same bits, and the op passes under
    # torch.use_deterministic_algorithms. `hub` sends 5000 edges to one node (a segment cut into pieces).
    inputs = make_inputs(300, 200, 20000, 64, 4, True, True, dtype, "cuda", seed=9)
    if hub:
        inputs["edge_index"][1, :5000] = 0
    grad_out = torch.randn(20000, dtype=dtype, device="cuda")
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first = forward_backward(edge_score, inputs, grad_out)
        second = forward_backward(edge_score, inputs, grad_out)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(first[0], second[0])
    for name in first[1]:
        assert torch.equal(first[1][name], second[1][name]), name
    assert_matches_reference(inputs, TOL[dtype])


@CUDA
def test_cuda_csr_order_matches_cpu():
    index = torch.randint(0, 500, (100_000,), generator=torch.Generator().manual_seed(1))
    for size in [500, 300]:  # 300: values >= size fall outside every range
        cpu = torch.ops.refine_fast.csr_order(index, size)
        gpu = torch.ops.refine_fast.csr_order(index.cuda(), size)
        assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))


@CUDA
def test_cuda_non_default_stream():
    inputs = make_inputs(300, 200, 20000, 64, 4, True, True, device="cuda", seed=4)
    grad_out = torch.randn(20000, device="cuda")
    expected = forward_backward(edge_score, inputs, grad_out)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = forward_backward(edge_score, inputs, grad_out)
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(got[1][k], expected[1][k]) for k in expected[1])


@CUDA
def test_cuda_no_sync_and_graph_capture():
    # No host synchronization in the forward or backward op: none under sync debug mode "error", and
    # both can be captured in a CUDA graph whose replay gives the same bits.
    inputs = make_inputs(300, 200, 20000, 64, 4, True, True, device="cuda", seed=3)
    args = [inputs[k] for k in ARGUMENTS]
    backward_args = [torch.randn(20000, device="cuda")] + args[:4] + args[5:]

    def run():
        return [torch.ops.refine_fast.edge_score(*args), *torch.ops.refine_fast.edge_score_backward(*backward_args)]

    assert_cuda_graph_safe(run)
