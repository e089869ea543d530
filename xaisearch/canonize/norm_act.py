"""BatchNorm subclasses that do more than normalise: which folds stay exact through them.

timm's ``BatchNormAct2d`` subclasses ``BatchNorm2d`` (for weight compatibility), but its own
``forward`` runs ``F.batch_norm`` and then its ``drop`` and ``act`` children. Every canonizer
treats it as a BatchNorm (``plan.BatchNorm``), so the folds must know what else it computes:

* **left** (Conv → BN): exact when the forward is ``F.batch_norm`` of its input with the
  module's own statistics, affine parameters and ε, followed only by child modules applied one
  after the other (BN, then dropout, then activation). Setting the BN part to the identity
  (``plan.IdentityBatchNorm``) keeps the children running on the folded conv's output, so the
  module becomes "its activation". Whether the forward is of that form is read off a
  ``torch.fx`` trace of the module's own forward, not guessed from attribute names.
* **right** (BN → Conv): never, for a subclass with its own ``forward`` or with children. A
  right fold moves the BN's affine map *past* what follows it; through a hidden activation that
  is wrong (``BatchNormAct2d(4)`` → ``Conv2d(4, 3, 1)``: relative difference 2.18), and a forward
  the trace cannot prove plain may hide one.

torch's own BatchNorm classes (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, lazy variants) are
plain by definition: their ``forward`` is torch's and they have no children.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import fx, nn

from xaisearch.canonize._graph import OwnForwardTracer, is_plain
from xaisearch.canonize.plan import BatchNorm

_TORCH_FORWARDS = {BatchNorm.forward, nn.SyncBatchNorm.forward}
_BATCH_NORM_INPUTS = ("running_mean", "running_var", "weight", "bias")
_BATCH_NORM_PARAMETERS = ("input", *_BATCH_NORM_INPUTS, "training", "momentum", "eps")  # F.batch_norm's order
_KNOWN: dict[tuple[object, ...], str | None] = {}  # own_forward_problem's answers, by what they depend on
_KNOWN_LIMIT = 1024


def is_plain_batchnorm(norm: nn.Module) -> bool:
    """A BatchNorm running torch's own ``forward`` with no child modules: BN and nothing else."""
    return isinstance(norm, BatchNorm) and type(norm).forward in _TORCH_FORWARDS and not norm._modules


def _batch_norm_call_problem(node: fx.Node, source: fx.Node, norm: BatchNorm) -> str | None:
    """Why ``node`` is not ``F.batch_norm(source, own statistics, own affine, eval mode, own ε)``."""
    names = dict(zip(_BATCH_NORM_PARAMETERS, node.args))
    names.update(node.kwargs)
    if names.get("input") is not source:
        return "normalises something other than its input"
    for key in _BATCH_NORM_INPUTS:
        value = names.get(key)
        expected = getattr(norm, key)
        if expected is None and value is None:
            continue
        if not (isinstance(value, fx.Node) and value.op == "get_attr" and value.target == key):
            return f"passes something other than its own {key} to F.batch_norm"
    if names.get("training", False) or names.get("eps", 1e-5) != norm.eps:
        return "calls F.batch_norm in training mode or with another eps"
    return None


def own_forward_problem(norm: nn.Module) -> str | None:
    """``None`` if ``norm`` (a BatchNorm) computes BN and then its children in sequence, else why not.

    ``None`` for torch's own classes. For a subclass with its own ``forward`` (timm's
    ``BatchNormAct2d``), its forward is traced with every child as a leaf: the tensor path must be
    input → ``F.batch_norm`` (its own statistics, affine parameters and ε, eval mode) → child →
    child → … → output, every step a single-input call. Size checks (``x.ndim == 4`` asserts)
    are allowed beside that path. The answer depends only on the class, the plain attributes the
    forward can branch on and the children's names and types, so it is remembered by those (a
    densenet121 has 121 BNs of one kind; tracing each cost 12 ms per plan).
    """
    if not isinstance(norm, BatchNorm):
        return f"{type(norm).__name__} is not a BatchNorm"
    if type(norm).forward in _TORCH_FORWARDS:
        return None
    key = (
        type(norm),
        tuple(sorted((k, v) for k, v in vars(norm).items() if is_plain(v))),
        tuple((name, type(child)) for name, child in norm.named_children()),
        norm.weight is None,
        norm.bias is None,
    )
    if key not in _KNOWN:
        if len(_KNOWN) >= _KNOWN_LIMIT:
            _KNOWN.clear()
        _KNOWN[key] = _traced_forward_problem(norm)
    return _KNOWN[key]


def _traced_forward_problem(norm: BatchNorm) -> str | None:
    kind = f"{type(norm).__name__} has its own forward"
    try:
        graph = OwnForwardTracer().trace(norm)
    except Exception as error:
        return f"{kind}, which torch.fx cannot trace ({type(error).__name__})"
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    output = next(node for node in graph.nodes if node.op == "output")
    calls = [node for node in graph.nodes if node.target is F.batch_norm]
    if len(inputs) != 1 or len(calls) != 1:
        return f"{kind}, which is not one F.batch_norm call on one input"
    problem = _batch_norm_call_problem(calls[0], inputs[0], norm)
    if problem is not None:
        return f"{kind}, which {problem}"
    cursor, children = calls[0], set(norm._modules)
    while cursor is not output.args[0]:
        users = list(cursor.users)
        step = users[0] if len(users) == 1 else None
        if step is None or step.op != "call_module" or step.target not in children or step.args != (cursor,):
            return f"{kind}, in which F.batch_norm is not followed by its child modules one after the other"
        if step.kwargs:
            return f"{kind}, which calls {step.target} with keyword arguments"
        cursor = step
    return None


def right_fold_norm_problem(norm: nn.Module) -> str | None:
    """Why a fold to the right cannot pass through ``norm``: a BatchNorm subclass with its own
    ``forward`` or with children (an activation after the BN, as in timm's ``BatchNormAct2d``)."""
    if not isinstance(norm, BatchNorm) or is_plain_batchnorm(norm):
        return None
    children = ", ".join(f"{name} ({type(child).__name__})" for name, child in norm.named_children())
    does = f"runs {children} after normalising" if children else "has its own forward"
    return f"{type(norm).__name__} {does}: a right fold would move its affine map past that, so it only folds left"
