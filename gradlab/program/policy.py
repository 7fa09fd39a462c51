"""What a tensor program may touch: allow-lists, checked on every access.

A program never gets a Python object it could walk out of. Attribute access
is allowed only on objects of the types listed here (tensors, modules,
optimizers, dtypes, autograd nodes, ...), never for a name that starts with an
underscore, and never for a name on the deny-list (file access, compilers,
process-wide settings, frame and code objects). Modules may be reached only
among ``ALLOWED_MODULES``.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

#: The only modules a program may take attributes from.
ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "torch.nn.init",
        "torch.autograd",
        "torch.autograd.functional",
        "torch.optim",
        "torch.optim.lr_scheduler",
        "torch.linalg",
        "torch.special",
        "torch.fft",
        "torch.cuda",
    }
)

#: The three imports a program may write (so that pasted tutorial code works).
ALLOWED_IMPORTS: dict[str, str] = {
    "torch": "torch",
    "torch.nn as nn": "torch.nn",
    "torch.nn.functional as F": "torch.nn.functional",
}

#: Names never allowed as attributes, whatever the object.
DENIED: frozenset[str] = frozenset(
    {
        # files, serialisation, native code, compilers
        "load", "save", "hub", "from_file", "ops", "classes", "cpp_extension", "utils",
        "jit", "compile", "export", "onnx", "package", "library", "backends", "distributed",
        "multiprocessing", "storage", "untyped_storage", "share_memory_", "share_memory",
        "from_numpy", "numpy", "pin_memory", "frombuffer", "tofile", "dump", "dumps",
        "load_state_dict_from_url", "set_detect_anomaly", "detect_anomaly", "profiler",
        # process-wide settings shared by every user of the server
        "set_default_dtype", "set_default_device", "set_default_tensor_type", "set_num_threads",
        "set_num_interop_threads", "use_deterministic_algorithms", "set_printoptions",
        "set_flush_denormal", "set_warn_always", "set_float32_matmul_precision",
        "set_rng_state", "get_rng_state", "set_anomaly_enabled", "set_device",
        # frames, code and interpreter internals, whatever object would carry them
        "gi_frame", "gi_code", "f_globals", "f_locals", "f_back", "f_builtins", "f_code",
        "tb_frame", "tb_next", "cr_frame", "ag_frame", "func_globals",
    }
)  # fmt: skip

# Read-only exploration of autograd nodes: y.grad_fn.next_functions, .name().
_NODE_ATTRIBUTES = frozenset({"next_functions", "name", "variable"})
_CONTAINER_ATTRIBUTES = {
    list: frozenset({"append", "extend", "pop", "index", "count", "insert", "remove", "copy",
                     "reverse", "clear"}),
    dict: frozenset({"items", "keys", "values", "get", "pop", "update", "copy", "clear"}),
    tuple: frozenset({"index", "count"}),
    set: frozenset({"add", "discard", "copy", "clear"}),
}  # fmt: skip
_NUMBER_ATTRIBUTES = frozenset({"real", "imag"})
_VALUE_TYPES: tuple[type, ...] = (
    torch.Tensor,
    nn.Module,
    torch.optim.Optimizer,
    torch.optim.lr_scheduler.LRScheduler,
    torch.dtype,
    torch.device,
    torch.Size,
    torch.finfo,
    torch.iinfo,
    torch.layout,
    torch.memory_format,
)


class Refused(Exception):
    """The program asked for something it may not have; the message says what."""


def check_attribute(obj: object, name: str) -> None:
    """Raise :class:`Refused` unless ``obj.name`` may be read."""
    if name.startswith("_"):
        raise Refused(f"the attribute '{name}' (names starting with '_' are not available)")
    if name in DENIED:
        raise Refused(f"the attribute '{name}' (not available in programs)")
    if isinstance(obj, types.ModuleType):
        if obj.__name__ not in ALLOWED_MODULES:
            raise Refused(f"the module '{obj.__name__}'")
        if name.startswith("set_") and name != "set_grad_enabled":
            raise Refused(f"'{obj.__name__}.{name}' (it changes settings for every user)")
        return
    if isinstance(obj, _VALUE_TYPES) or _is_return_type(obj):
        return
    if isinstance(obj, torch.autograd.graph.Node):
        if name in _NODE_ATTRIBUTES:
            return
        raise Refused(
            f"the attribute '{name}' of an autograd node (try .name() or .next_functions)"
        )
    for kind, allowed in _CONTAINER_ATTRIBUTES.items():
        if isinstance(obj, kind):
            if name in allowed:
                return
            raise Refused(f"the {kind.__name__} method '{name}'")
    if isinstance(obj, int | float | complex) and name in _NUMBER_ATTRIBUTES:
        return
    raise Refused(f"attributes of {_describe(obj)}")


def check_value(value: Any, where: str) -> Any:
    """Refuse modules outside the allow-list however they are reached; return ``value``."""
    if isinstance(value, types.ModuleType) and value.__name__ not in ALLOWED_MODULES:
        raise Refused(f"the module '{value.__name__}' (reached through {where})")
    return value


def check_attribute_assignment(obj: object, name: str, value: object) -> None:
    """Raise :class:`Refused` unless ``obj.name = value`` may be written."""
    if name.startswith("_") or name in DENIED:
        raise Refused(f"setting the attribute '{name}'")
    if isinstance(obj, torch.Tensor):
        if name in ("requires_grad", "grad", "data"):
            return
        raise Refused(f"setting the tensor attribute '{name}' (only requires_grad, grad, data)")
    if isinstance(obj, nn.Module) and isinstance(
        value, nn.Module | torch.Tensor | bool | int | float
    ):
        return  # model.fc = nn.Linear(...), layer.weight = nn.Parameter(...), p = 0.5
    raise Refused(f"setting attributes of {_describe(obj)}")


_BUILTIN_CLASSES = frozenset({range, int, float, bool, complex})


def check_call(func: object) -> None:
    """Raise :class:`Refused` for callables that would hand out Python."""
    foreign = isinstance(func, type) and func.__module__.split(".")[0] != "torch"
    if foreign and func not in _BUILTIN_CLASSES:
        raise Refused(f"calling {getattr(func, '__name__', 'that class')}")
    name = getattr(func, "__name__", "")
    if name in DENIED or name in ("eval", "exec", "compile", "open", "__import__", "getattr"):
        raise Refused(f"calling '{name}'")


def _is_return_type(obj: object) -> bool:
    return type(obj).__module__ == "torch.return_types"


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    return f"a {type(obj).__name__} object"
