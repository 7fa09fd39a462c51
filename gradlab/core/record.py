"""Record forward values and module paths while code runs.

Inside :func:`record`, every ATen op that autograd records is seen through a
``TorchDispatchMode``, below autograd, so ops inside composites such as
``F.cross_entropy`` (its ``LogSoftmaxBackward0``) are seen too. Once autograd
has attached the output's ``grad_fn``, the recorder keeps a detached alias of
the output (no copy) in that node's ``metadata`` together with the dotted path
of the innermost ``nn.Module`` that was running. The alias lives exactly as
long as the node does.

An in-place op would overwrite an alias, so before any op that writes to a
tensor the recorder copies the recorded values that share its storage (copy on
write). A recorded value is therefore the value the op produced, whatever
happens afterwards; :func:`recorded_value` also checks the version counter and
returns ``None`` rather than a value that was changed outside the recorder.

Any ``TorchDispatchMode`` makes PyTorch's C++ ``reshape`` take ``view`` where a
plain run takes ``_reshape_alias`` (it treats every tensor as a subclass while a
mode is on), so the graph would hold ``ViewBackward0`` where PyTorch builds
``ReshapeAliasBackward0`` (``matmul`` of batched, transposed operands does
this in every attention layer). While some thread records, ``reshape`` has a
kernel of its own at the autograd keys: in a recording thread it runs PyTorch's
composite with the Python key excluded, which is exactly the plain run's
choice, and keeps the outputs itself; elsewhere it runs the composite as is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode

from gradlab.core.hooks import GlobalHooks

# Key of what the recorder keeps in grad_fn.metadata: the _Entry of output 0 when that
# is the only output kept (almost every node), else {output_nr: _Entry}.
RECORD_KEY = "gradlab"
_local = threading.local()


@dataclass(slots=True)
class _Entry:
    """What the recorder keeps for one output of one autograd node."""

    value: torch.Tensor  # detached alias of the output, or its copy after copy-on-write
    version: int  # the output's version counter when recorded
    module: str | None
    module_type: str | None
    copied: bool = False

    def current(self) -> bool:
        """Whether ``value`` still holds what the op produced."""
        return self.copied or self.value._version == self.version


@dataclass
class Recording:
    """What a :func:`record` block captured."""

    ops: int = 0  # outputs recorded
    copies: int = 0  # values copied before an in-place op would overwrite them
    _modules: list[tuple[torch.nn.Module, str]] = field(default_factory=list, repr=False)
    _children: dict[int, dict[int, str]] = field(default_factory=dict, repr=False)
    _descendants: dict[int, dict[int, str]] = field(default_factory=dict, repr=False)


@contextmanager
def record() -> Iterator[Recording]:
    """Record the forward value and module path of every op node created inside.

    :func:`gradlab.trace` then attaches ``value``, ``module`` and
    ``module_type`` to each op node. A ``record`` block nested in another one
    in the same thread adds nothing.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> with gradlab.record():
    ...     y = x ** 2
    >>> G = gradlab.trace(y)
    >>> G.nodes["fn0"]["op"], G.nodes["fn0"]["value"]["values"]
    ('PowBackward0', [4.0, 9.0])
    """
    if getattr(_local, "recorder", None) is not None:
        yield _local.recorder.recording
        return
    recorder = _Recorder(Recording())
    _MODULE_HOOKS.acquire()
    _local.recorder = recorder
    try:
        with recorder:
            yield recorder.recording
    finally:
        recorder.flush()
        _local.recorder = None
        _MODULE_HOOKS.release()


def recorded(fn: Any, output: int = 0) -> _Entry | None:
    """What :func:`record` kept for output ``output`` of autograd node ``fn``."""
    kept: _Entry | dict[int, _Entry] | None = fn.metadata.get(RECORD_KEY)
    if type(kept) is _Entry:
        return kept if output == 0 else None
    return kept.get(output) if kept else None  # type: ignore[union-attr]


def recorded_value(fn: Any, output: int = 0) -> torch.Tensor | None:
    """The recorded forward value of an output of ``fn``; ``None`` if not recorded
    or changed in place outside the recorder since."""
    entry = recorded(fn, output)
    return entry.value if entry is not None and entry.current() else None


class _Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    # Outputs wait in a batch until autograd has attached their grad_fn. Only an
    # op that writes to a tensor can change an existing tensor's grad_fn, so the
    # batch is resolved before such an op, when it grows large, and on exit.
    FLUSH_EVERY = 256

    def __init__(self, recording: Recording) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recording = recording
        self.modules = recording._modules
        # (op output, innermost (module, path) or None, whether the op wrote in place)
        self.pending: list[tuple[Any, tuple[torch.nn.Module, str] | None, bool]] = []
        # storage pointer -> entries whose value aliases that storage. Entries wait in
        # ``unindexed`` until an op writes to a tensor: most forwards never do, and
        # finding a tensor's storage costs more than the rest of keeping it.
        self.aliases: dict[int, list[_Entry]] = {}
        self.unindexed: list[_Entry] = []
        # op -> positions and names of the arguments it writes to (empty: none)
        self.written: dict[Any, list[tuple[int, str]]] = {}

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        written = self.written.get(func)
        if written is None:
            written = self.written[func] = _written_arguments(func)
        if written:
            self.flush()
            self._copy_before_write(written, args, kwargs or {})
        elif len(self.pending) >= self.FLUSH_EVERY:
            self.flush()
        out = func(*args, **kwargs) if kwargs else func(*args)
        if _grad_enabled():  # with grad mode off autograd attaches no grad_fn
            modules = self.modules
            self.pending.append((out, modules[-1] if modules else None, bool(written)))
        return out

    def flush(self) -> None:
        """Attach the pending outputs to the grad_fn autograd gave them."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        # Handlers run below autograd, where ADInplaceOrView is excluded and detach()
        # would give an alias a version counter of its own; let it share the output's.
        with torch._C._SetExcludeDispatchKeyGuard(torch._C.DispatchKey.ADInplaceOrView, False):
            for out, module, wrote in pending:
                for t in (out,) if isinstance(out, torch.Tensor) else _tensors(out):
                    try:
                        fn = t.grad_fn
                    except RuntimeError:  # a view whose history PyTorch refuses to rebuild
                        continue
                    if fn is None:
                        continue
                    self._keep(t, module)
                    if wrote and t._is_view() and t._base is not None:
                        # An in-place op on a view rewrites the base's history (CopySlices).
                        self._keep(t._base, module)

    def _keep(self, t: torch.Tensor, module: tuple[torch.nn.Module, str] | None) -> None:
        fn = t.grad_fn
        if fn is None:
            return
        self._attach(fn, t.output_nr, t, module)

    def _attach(
        self, fn: Any, nr: int, t: torch.Tensor, module: tuple[torch.nn.Module, str] | None
    ) -> None:
        """Keep ``t`` (detached) as the value of output ``nr`` of ``fn``."""
        metadata = cast("dict[str, Any]", fn.metadata)
        kept = metadata.get(RECORD_KEY)
        if kept is not None and (nr == 0 if type(kept) is _Entry else nr in kept):
            return  # kept already
        path, kind = (module[1], type(module[0]).__name__) if module else (None, None)
        entry = _Entry(t.detach(), t._version, path, kind)
        if kept is None:
            metadata[RECORD_KEY] = entry if nr == 0 else {nr: entry}
        elif type(kept) is _Entry:
            metadata[RECORD_KEY] = {0: kept, nr: entry}
        else:
            kept[nr] = entry
        self.recording.ops += 1
        self.unindexed.append(entry)

    def _index(self) -> None:
        """File the entries kept since the last write under their storage."""
        for entry in self.unindexed:
            t = entry.value
            if not entry.copied and t.layout == torch.strided and t.device.type != "meta":
                self.aliases.setdefault(t.untyped_storage().data_ptr(), []).append(entry)
        self.unindexed = []

    def _copy_before_write(
        self, written: list[tuple[int, str]], args: tuple[Any, ...], kwargs: Any
    ) -> None:
        self._index()
        for i, name in written:
            target = kwargs.get(name, args[i] if i < len(args) else None)
            for t in _tensors(target):
                if t.layout == torch.strided:
                    for entry in self.aliases.pop(t.untyped_storage().data_ptr(), []):
                        if not entry.copied and entry.value._version == entry.version:
                            entry.value = entry.value.clone()
                            entry.copied = True
                            self.recording.copies += 1


_grad_enabled = torch.is_grad_enabled
_RESHAPE = torch.ops.aten.reshape.default
_COMPOSITE = torch._C.DispatchKey.CompositeImplicitAutograd
_PYTHON_KEY = torch._C.DispatchKeySet(torch._C.DispatchKey.Python)
_current_mode = _get_current_dispatch_mode


def _reshape(self: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """``aten::reshape`` at the autograd keys while some thread records (module docstring)."""
    recorder: _Recorder | None = getattr(_local, "recorder", None)
    if (
        recorder is None
        or torch._C._len_torch_dispatch_stack() != 1
        or id(_current_mode()) != id(recorder)
    ):  # not recording here (or inside the handler), or another mode is on: as PyTorch does
        return _RESHAPE._op_dk(_COMPOSITE, self, shape)  # type: ignore[no-any-return]
    with torch._C._ExcludeDispatchKeyGuard(_PYTHON_KEY):
        out: torch.Tensor = _RESHAPE._op_dk(_COMPOSITE, self, shape)
    if _grad_enabled() and out.grad_fn is not None:
        modules = recorder.modules
        module = modules[-1] if modules else None
        recorder.flush()
        recorder._keep(out, module)
        fn = out.grad_fn
        if type(fn).__name__ == "UnsafeViewBackward0":  # no view possible: a contiguous copy
            copy, nr = fn.next_functions[0]
            if copy is not None and type(copy).__name__ == "CloneBackward0":
                with torch.no_grad(), torch._C._ExcludeDispatchKeyGuard(_PYTHON_KEY):
                    recorder._attach(copy, nr, out.view(self.shape), module)
    return out


def _reshape_kernels() -> torch.library.Library:
    """Give ``aten::reshape`` the kernel :func:`_reshape` at the CPU and CUDA autograd keys."""
    library = torch.library.Library("aten", "IMPL")  # type: ignore[no-untyped-call]
    for key in ("AutogradCPU", "AutogradCUDA"):
        library.impl("reshape", _reshape, key)  # type: ignore[no-untyped-call]
    return library


def _written_arguments(func: Any) -> list[tuple[int, str]]:
    """Positions and names of the arguments an op writes to (in place or ``out=``)."""
    return [
        (i, a.name)
        for i, a in enumerate(func._schema.arguments)
        if a.alias_info is not None and a.alias_info.is_write
    ]


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of an op's output or argument: a tensor, or a tuple or list of them."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def _module_path(recording: Recording, module: torch.nn.Module) -> str:
    """Dotted path of ``module`` below the outermost module running."""
    stack = recording._modules
    if not stack:
        return ""
    parent, parent_path = stack[-1]
    children = recording._children.get(id(parent))
    if children is None:
        children = recording._children[id(parent)] = {
            id(child): name for name, child in parent._modules.items()
        }
    name = children.get(id(module))
    if name is None:
        # Called through a container that is never called itself (a ModuleList:
        # "layers.3"), so look deeper; a module the caller does not own at all is
        # named by its class.
        name = _descendant_name(recording, parent, module) or _foreign_name(module)
    return f"{parent_path}.{name}" if parent_path else name


#: Ends the path segment of a module that the module running it does not own: one
#: made during ``forward`` (``nn.CrossEntropyLoss()(logits, labels)``) or passed in.
#: No attribute has such a name, so ``get_submodule`` is never sent to a wrong module.
FOREIGN = "@forward"


def _foreign_name(module: torch.nn.Module) -> str:
    return type(module).__name__ + FOREIGN


def _descendant_name(
    recording: Recording, parent: torch.nn.Module, module: torch.nn.Module
) -> str | None:
    names = recording._descendants.get(id(parent))
    if names is None:
        names = recording._descendants[id(parent)] = {
            id(m): path for path, m in parent.named_modules(remove_duplicate=False) if path
        }
    return names.get(id(module))


def _enter_module(module: torch.nn.Module, args: Any) -> None:
    recorder = getattr(_local, "recorder", None)
    if recorder is not None:
        stack = recorder.recording._modules
        stack.append((module, _module_path(recorder.recording, module)))


def _leave_module(module: torch.nn.Module, args: Any, output: Any) -> None:
    recorder = getattr(_local, "recorder", None)
    if recorder is not None:
        stack = recorder.recording._modules
        if stack and stack[-1][0] is module:
            stack.pop()


# Global module hooks slow every module call in the process, so they exist only
# while some thread records; each checks for a recorder of its own thread.
_MODULE_HOOKS = GlobalHooks(
    forward_pre=_enter_module, forward=_leave_module, always_call=True, kernels=_reshape_kernels
)
