"""Hostile programs, each with the outcome a correct runner gives it.

``expect`` says what must happen:

* ``"refused"``: the program is refused (``error.kind == "refused"``) with a message
  that names the construct (``word`` appears in it);
* ``"limit"``: a limit stops it (``error.kind == "limit"``; ``word`` in the message);
* ``"error"``: it stops with an error of any kind, in one short line (``word`` in it);
* ``"runs"``: it runs to the end; the harm it tries (a faked result, a hook after the
  run) does not happen; ``word`` must appear in its output.

``{target}`` in a source is replaced by a path in an empty temporary folder: nothing
may appear there. ``tampers`` marks programs that try to change torch for everyone:
torch, ``torch.nn.functional`` and ``torch.nn`` must be unchanged afterwards.
``needs_worker`` marks programs that only a separate process (killed by the operating
system on its memory or CPU limit) can stop: one C-level operation or a pile of Python
objects that the interpreter's steps never see; they run only through the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Expect = Literal["refused", "limit", "error", "runs"]


@dataclass(frozen=True)
class Hostile:
    """One hostile program and the outcome it must get."""

    name: str
    category: str
    source: str
    expect: Expect
    word: str = ""
    tampers: bool = False
    needs_worker: bool = False


def _h(
    category: str,
    name: str,
    source: str,
    expect: Expect,
    word: str = "",
    *,
    tampers: bool = False,
    needs_worker: bool = False,
) -> Hostile:
    return Hostile(name, category, source, expect, word, tampers, needs_worker)


_NESTED = "a = []\nb = []\nfor i in range(36):\n    a = [a, a]\n    b = [b, b]\n"

CORPUS: tuple[Hostile, ...] = (
    # -- attribute walks to dunders ---------------------------------------------------------
    _h("dunder", "tuple_subclasses", "().__class__.__bases__[0].__subclasses__()",
       "refused", "__class__"),
    _h("dunder", "tensor_mro", "x = torch.ones(1)\nm = x.__class__.__mro__", "refused",
       "__class__"),
    _h("dunder", "function_globals", "def f():\n    pass\ng = f.__globals__", "refused",
       "__globals__"),
    _h("dunder", "lambda_code", "c = (lambda: 0).__code__", "refused", "__code__"),
    _h("dunder", "module_dict", "load = torch.__dict__['load']", "refused", "__dict__"),
    _h("dunder", "module_builtins", "b = F.__builtins__", "refused", "__builtins__"),
    _h("dunder", "name_builtins", "b = __builtins__", "refused", "__builtins__"),
    _h("dunder", "import_dunder", "os = __import__('os')", "refused", "__import__"),
    _h("dunder", "self_class_in_method",
       "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
       "        self.k = self.__class__\n\nnet = Net()", "refused", "__class__"),
    _h("dunder", "super_other_dunder",
       "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
       "        d = super().__dict__\n\nnet = Net()", "refused", "__dict__"),
    _h("dunder", "define_repr", "class A:\n    def __repr__(self):\n        return 'x'",
       "refused", "__repr__"),
    _h("dunder", "define_getattribute",
       "class A:\n    def __getattribute__(self, name):\n        return 1", "refused",
       "__getattribute__"),
    _h("dunder", "define_del", "class A:\n    def __del__(self):\n        pass", "refused",
       "__del__"),
    _h("dunder", "define_extra_repr",
       "class Net(nn.Module):\n    def extra_repr(self):\n        return 'x' * 10", "refused",
       "extra_repr"),
    _h("dunder", "metaclass_keyword", "class A(metaclass=torch.Tensor):\n    pass", "refused",
       "metaclass"),
    _h("dunder", "derive_from_type", "class A(torch.Size):\n    pass", "refused",
       "derived from Size"),
    _h("dunder", "node_register_hook",
       "x = torch.ones(2, requires_grad=True)\nh = x.exp().grad_fn.register_hook", "refused",
       "register_hook"),
    _h("dunder", "getattr_builtin", "load = getattr(torch, 'load')", "refused", "getattr"),
    _h("dunder", "vars_builtin", "v = vars(F)", "refused", "vars"),
    _h("dunder", "type_builtin", "t = type(torch.ones(1))", "refused", "type"),
    _h("dunder", "class_attribute_of_layer", "f = nn.Linear.forward", "refused",
       "of the class Linear"),
    _h("dunder", "inherited_method_on_own_class",
       "class A(nn.Module):\n    pass\nh = A.register_forward_hook", "refused",
       "of the class A"),
    _h("dunder", "dunder_keyword", "x = torch.ones(2, **{'__class__': 1})", "refused",
       "__class__"),
    _h("dunder", "bound_method_self", "x = torch.ones(1)\ns = x.add.__self__", "refused",
       "__self__"),
    _h("dunder", "two_argument_super_foreign", "s = super(nn.Linear, nn.Linear(1, 1))",
       "refused", "super()"),
    _h("tampering", "super_init_on_a_module",
       "class A(nn.Module):\n    pass\nsuper(A, A).__init__(F)", "refused", "super(Class, x)",
       tampers=True),
    _h("tampering", "method_called_on_a_module",
       "class A(nn.Module):\n    def grow(self):\n        super().__init__()\n"
       "        self.weight = 1\nA.grow(F)", "error", "super", tampers=True),
    # -- format strings ---------------------------------------------------------------------
    _h("format", "str_format_class", "s = '{0.__class__}'.format(torch.ones(1))", "refused",
       "format"),
    _h("format", "str_format_method", "s = '{0.__init__.__globals__}'\nf = s.format(1)",
       "refused", "format field"),
    _h("format", "str_format_index", "s = '{0[0]}'.format([1])", "refused", "format field"),
    _h("format", "str_format_conversion", "s = '{!r}'.format(1)", "refused", "!r"),
    _h("format", "str_format_width_bomb", "s = '{:>999999999}'.format(1)", "limit",
       "format width"),
    _h("format", "percent_width_bomb", "s = '%999999999d' % 1", "limit", "format width"),
    _h("format", "percent_star_width", "s = '%*d' % (999999999, 1)", "refused", "% format"),
    _h("format", "percent_repr", "s = '%r' % torch", "refused", "%r"),
    _h("format", "module_path_in_output", "print(torch, [F], '%s' % nn, f'{torch}')\nG = F",
       "runs", "<module 'torch'>"),
    _h("format", "format_map", "s = '{x.real}'.format_map({'x': 1})", "refused",
       "format_map"),
    _h("format", "fstring_repr_conversion", "x = 1\ns = f'{x!r}'", "refused", "!r"),
    _h("format", "fstring_ascii_conversion", "x = 1\ns = f'{x!a}'", "refused", "!a"),
    _h("format", "fstring_dunder", "s = f'{F.__dict__}'", "refused", "__dict__"),
    _h("format", "fstring_width_bomb", "s = f'{1:>999999999}'", "limit", "format width"),
    _h("format", "fstring_spec_from_variable", "w = '.99999999f'\ns = f'{1.5:{w}}'", "limit",
       "format width"),
    _h("format", "fstring_spec_with_fields", "s = f\"{torch.ones(1):{'{0.__class__}'}}\"",
       "refused", "format spec"),
    # -- frames, tracebacks, generators ---------------------------------------------------
    _h("frames", "genexp_frame", "g = (y for y in [1])\nf = g.gi_frame.f_globals", "refused",
       "gi_frame"),
    _h("frames", "parameters_frame", "g = nn.Linear(1, 1).parameters()\nf = g.gi_frame",
       "refused", "gi_frame"),
    _h("frames", "iter_frame", "i = iter([1, 2])\nf = i.gi_frame", "refused", "gi_frame"),
    _h("frames", "generator_function", "def f():\n    yield 1", "refused", "yield"),
    _h("frames", "traceback_via_try",
       "try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__.tb_frame",
       "refused", "try"),
    _h("frames", "raise", "raise ValueError('x')", "refused", "raise"),
    _h("frames", "async_function", "async def f():\n    pass", "refused", "async"),
    _h("frames", "global_statement", "def f():\n    global torch\n    torch = 1", "refused",
       "global"),
    _h("frames", "torch_sys_modules", "m = torch.sys.modules", "refused", "torch.sys"),
    # -- files --------------------------------------------------------------------------------
    _h("files", "open_write", "f = open('{target}', 'w')\nf.write('x')", "refused", "open"),
    _h("files", "with_open", "with open('{target}', 'w') as f:\n    pass", "refused", "open"),
    _h("files", "torch_save", "torch.save(torch.ones(1), '{target}')", "refused", "save"),
    _h("files", "torch_load", "x = torch.load('/etc/passwd')", "refused", "load"),
    _h("files", "from_file", "x = torch.from_file('/etc/passwd', size=100)", "refused",
       "from_file"),
    _h("files", "file_writer", "w = torch.PyTorchFileWriter('{target}')", "refused",
       "PyTorchFileWriter"),
    _h("files", "compilation_unit",
       "cu = torch.CompilationUnit('def f(x):\\n    return torch.from_file(\"/etc/passwd\", "
       "size=10)')", "refused", "CompilationUnit"),
    _h("files", "jit_script", "f = torch.jit.script(lambda x: x)", "refused", "jit"),
    _h("files", "numpy_tofile", "torch.ones(3).numpy().tofile('{target}')", "refused",
       "numpy"),
    _h("files", "import_numpy", "import numpy as np\nnp.save('{target}', 1)", "refused",
       "import numpy"),
    _h("files", "pathlib", "from pathlib import Path\nPath('{target}').write_text('x')",
       "refused", "pathlib"),
    _h("files", "tensor_type_imports", "t = torch.ones(1).type('os.system')", "refused",
       "'type'"),
    _h("files", "untyped_storage_repr", "s = torch.ones(3).untyped_storage()", "refused",
       "untyped_storage"),
    _h("files", "serialization_module", "s = torch.serialization", "refused",
       "serialization"),
    _h("files", "datapipes", "d = torch.utils.data.datapipes", "refused", "datapipes"),
    _h("files", "from_import_load", "from torch import load\nx = load('/etc/passwd')",
       "refused", "load"),
    # -- shared libraries ---------------------------------------------------------------------
    _h("libraries", "import_ctypes", "import ctypes", "refused", "import ctypes"),
    _h("libraries", "torch_ctypes_cdll", "lib = torch.ctypes.CDLL('libc.so.6')", "refused",
       "ctypes"),
    _h("libraries", "pluggable_allocator",
       "a = torch.cuda.CUDAPluggableAllocator('{target}', 'alloc', 'free')", "refused",
       "CUDAPluggableAllocator"),
    _h("libraries", "ops_load_library", "torch.ops.load_library('/tmp/x.so')", "refused",
       "ops"),
    _h("libraries", "classes_load_library", "torch.classes.load_library('/tmp/x.so')",
       "refused", "classes"),
    _h("libraries", "cpp_extension",
       "from torch.utils.cpp_extension import load_inline", "refused", "cpp_extension"),
    _h("libraries", "torch_c", "d = torch._C._dlopen", "refused", "_C"),
    _h("libraries", "torch_library", "lib = torch.library.Library('x', 'DEF')", "refused",
       "library"),
    # -- processes ----------------------------------------------------------------------------
    _h("processes", "import_os", "import os\nos.system('touch {target}')", "refused",
       "import os"),
    _h("processes", "torch_os", "torch.os.system('touch {target}')", "refused", "torch.os"),
    _h("processes", "import_subprocess", "import subprocess", "refused", "import subprocess"),
    _h("processes", "torch_multiprocessing", "p = torch.multiprocessing.Process", "refused",
       "multiprocessing"),
    _h("processes", "dataloader_workers",
       "from torch.utils.data import DataLoader, TensorDataset\n"
       "loader = DataLoader(TensorDataset(torch.ones(4)), num_workers=2)", "refused",
       "num_workers"),
    _h("processes", "dataloader_positional_workers",
       "from torch.utils.data import DataLoader, TensorDataset\n"
       "loader = DataLoader(TensorDataset(torch.ones(4)), 1, False, None, None, 2)", "refused",
       "positional"),
    _h("processes", "dataloader_worker_init",
       "from torch.utils.data import DataLoader, TensorDataset\n"
       "loader = DataLoader(TensorDataset(torch.ones(4)), worker_init_fn=print)", "refused",
       "worker_init_fn"),
    _h("processes", "distributed_init", "torch.distributed.init_process_group('gloo')",
       "refused", "distributed"),
    _h("processes", "torch_fork", "f = torch.fork", "refused", "torch.fork"),
    _h("processes", "torch_signal", "s = torch.signal", "refused", "torch.signal"),
    # -- the network --------------------------------------------------------------------------
    _h("network", "import_socket", "import socket", "refused", "import socket"),
    _h("network", "urllib", "from urllib.request import urlopen", "refused", "urllib"),
    _h("network", "hub_download", "torch.hub.download_url_to_file('http://x', '{target}')",
       "refused", "hub"),
    _h("network", "tcp_store", "s = torch.distributed.TCPStore('127.0.0.1', 1234)", "refused",
       "distributed"),
    _h("network", "rpc", "r = torch.distributed.rpc", "refused", "distributed"),
    # -- aliasing ---------------------------------------------------------------------------
    _h("aliasing", "in_a_list", "fs = [torch.load]\nx = fs[0]('/etc/passwd')", "refused",
       "load"),
    _h("aliasing", "in_a_dict", "d = {'w': torch.PyTorchFileWriter}\nw = d['w']('{target}')",
       "refused", "PyTorchFileWriter"),
    _h("aliasing", "default_argument", "def f(g=torch.save):\n    return g\nf()(1, '{target}')",
       "refused", "save"),
    _h("aliasing", "closure",
       "def outer():\n    h = torch.from_file\n    def inner():\n        return h('/etc/passwd')\n"
       "    return inner\nx = outer()()", "refused", "from_file"),
    _h("aliasing", "class_attribute",
       "class A:\n    opener = torch.load\nx = A.opener('/etc/passwd')", "refused", "load"),
    _h("aliasing", "module_attribute", "m = nn.Linear(1, 1)\nm.writer = torch.PyTorchFileWriter",
       "refused", "PyTorchFileWriter"),
    _h("aliasing", "wraps_reexported", "w = torch.optim.lr_scheduler.wraps", "refused",
       "wraps"),
    _h("aliasing", "walrus", "f = (w := torch.optim.lr_scheduler.wraps)", "refused", "wraps"),
    _h("aliasing", "warnings_reexported", "w = torch.nn.functional.warnings", "refused",
       "warnings"),
    _h("aliasing", "builtin_self", "p = print\ns = p.__self__", "refused", "__self__"),
    _h("aliasing", "own_object_attribute",
       "class Box:\n    pass\nb = Box()\nb.f = torch.serialization", "refused",
       "serialization"),
    _h("aliasing", "from_import_submodule", "from torch import jit", "refused", "jit"),
    # -- tampering with shared modules -----------------------------------------------------
    _h("tampering", "rebind_relu", "F.relu = lambda x: x", "refused",
       "torch.nn.functional.relu", tampers=True),
    _h("tampering", "rebind_add", "torch.add = torch.sub", "refused", "torch.add",
       tampers=True),
    _h("tampering", "setattr_builtin", "setattr(torch, 'add', 0)", "refused", "setattr",
       tampers=True),
    _h("tampering", "wraps_copies_dict",
       "m = nn.Linear(1, 1)\nm.relu = 0\ntorch.optim.lr_scheduler.wraps(m)(F)", "refused",
       "wraps", tampers=True),
    _h("tampering", "module_call", "nn.Module.__call__ = 0", "refused", "__call__",
       tampers=True),
    _h("tampering", "layer_forward", "nn.Linear.forward = lambda self, x: x", "refused",
       "class Linear", tampers=True),
    _h("tampering", "alias_then_rebind", "import torch.nn.functional as G\nG.relu = G.gelu",
       "refused", "torch.nn.functional.relu", tampers=True),
    _h("tampering", "init_function", "torch.nn.init.zeros_ = print", "refused",
       "torch.nn.init.zeros_", tampers=True),
    _h("tampering", "tensor_method", "torch.Tensor.add = torch.Tensor.sub", "refused",
       "class Tensor", tampers=True),
    _h("tampering", "from_import_rebind", "from torch import nn as N\nN.Linear = 0", "refused",
       "torch.nn.Linear", tampers=True),
    _h("tampering", "delete_attribute", "del F.relu", "refused", "deleting", tampers=True),
    _h("tampering", "default_dtype", "torch.set_default_dtype(torch.float64)", "refused",
       "set_default_dtype", tampers=True),
    _h("tampering", "num_threads", "torch.set_num_threads(64)", "refused", "set_num_threads",
       tampers=True),
    _h("tampering", "grad_mode_left_off", "torch.set_grad_enabled(False)\nprint('off')",
       "runs", "off", tampers=True),
    _h("tampering", "backends_flag", "torch.backends.cudnn.enabled = False", "refused",
       "backends", tampers=True),
    # -- C-level bombs ------------------------------------------------------------------------
    _h("bombs", "nested_list_compare", _NESTED + "print(a == b)", "limit", "nested list"),
    _h("bombs", "nested_list_str", _NESTED + "s = str(a)", "limit", "nested list"),
    _h("bombs", "nested_list_in", _NESTED + "print(a in [b])", "limit", "nested list"),
    _h("bombs", "nested_list_max", _NESTED + "m = max([a, b])", "limit", "nested list"),
    _h("bombs", "nested_list_count", _NESTED + "n = [a].count(b)", "limit", "nested list"),
    _h("bombs", "nested_list_to_tensor", _NESTED + "t = torch.tensor(a)", "limit",
       "nested list"),
    _h("bombs", "nested_tuple_hash", "t = ()\nfor i in range(40):\n    t = (t, t)\ns = {t}",
       "limit", "nested list"),
    _h("bombs", "nested_tuple_dict_key",
       "t = ()\nfor i in range(40):\n    t = (t, t)\nd = dict([(t, 1)])", "limit",
       "nested list"),
    _h("bombs", "nested_tuple_set_comprehension",
       "t = ()\nfor i in range(40):\n    t = (t, t)\ns = {x for x in [t]}", "limit",
       "nested list"),
    _h("bombs", "nested_tuple_dict_comprehension",
       "t = ()\nfor i in range(40):\n    t = (t, t)\nd = {x: 1 for x in [t]}", "limit",
       "nested list"),
    _h("bombs", "nested_tuple_item_assignment",
       "t = ()\nfor i in range(40):\n    t = (t, t)\nd = {}\nd[t] = 1", "limit", "nested list"),
    _h("bombs", "big_int_squaring", "x = 2 ** 4000\nfor i in range(40):\n    x = x * x",
       "limit", "bits"),
    _h("bombs", "big_int_power", "x = 2 ** 10 ** 10", "limit", "bits"),
    _h("bombs", "sum_of_lists", "big = [0] * 1000000\nt = sum([big] * 2000, [])", "limit",
       "items"),
    _h("bombs", "extend_itself", "a = [0] * 1000\nfor i in range(40):\n    a.extend(a)",
       "limit", "items"),
    _h("bombs", "add_itself", "a = [0] * 1000\nfor i in range(40):\n    a += a", "limit",
       "items"),
    _h("bombs", "huge_tensor", "x = torch.empty(2 ** 40)", "limit", "elements"),
    _h("bombs", "huge_randn", "x = torch.randn(10 ** 4, 10 ** 4)", "limit", "elements"),
    _h("bombs", "huge_repeat", "x = torch.ones(10 ** 5).repeat(10 ** 5)", "limit",
       "elements"),
    _h("bombs", "heavy_matmul", "x = torch.ones(4000, 4000)\ny = x @ x", "limit",
       "floating-point"),
    _h("bombs", "huge_string", "s = 'x' * (10 ** 10)", "limit", "items"),
    _h("bombs", "huge_join", "s = ''.join(['x' * 900000] * 1000)", "limit", "characters"),
    _h("bombs", "huge_replace", "s = 'ab' * 400000\ns = s.replace('a', 'a' * 1000)", "limit",
       "characters"),
    _h("bombs", "huge_tolist", "x = torch.zeros(4000, 4000).tolist()", "limit", "tolist"),
    _h("bombs", "round_huge_digits", "r = round(5, -10 ** 18)", "limit", "round"),
    _h("bombs", "deep_list_repr", "a = []\nfor i in range(100000):\n    a = [a]\nprint(a)",
       "limit", "nests too deeply"),
    _h("bombs", "long_expression", "x = 1" + " + 1" * 4000, "limit", "nests too deeply"),
    _h("bombs", "many_tensors",
       "xs = []\nfor i in range(100000):\n    xs.append(torch.ones(10000))", "limit"),
    _h("bombs", "python_lists_pile",
       "xs = []\nfor i in range(2000):\n    xs.append([0] * 1000000)", "limit",
       needs_worker=True),
    _h("bombs", "python_strings_pile",
       "xs = []\nfor i in range(4000):\n    xs.append('x' * 1000000)", "limit",
       needs_worker=True),
    # -- hooks and callbacks ----------------------------------------------------------------
    _h("hooks", "tensor_hook_allocates",
       "x = torch.ones(3, requires_grad=True)\n"
       "h = x.register_hook(lambda g: g + torch.ones(30000, 30000).sum())\n"
       "(x * 2).sum().backward()", "limit", "elements"),
    _h("hooks", "forward_hook_allocates",
       "m = nn.Linear(2, 2)\nh = m.register_forward_hook(lambda mod, i, o: torch.ones(30000, "
       "30000))\ny = m(torch.ones(1, 2))", "limit", "elements"),
    _h("hooks", "backward_hook_loops",
       "m = nn.Linear(2, 2)\ndef hook(mod, gi, go):\n    while True:\n        pass\n"
       "h = m.register_full_backward_hook(hook)\n"
       "m(torch.ones(1, 2, requires_grad=True)).sum().backward()", "limit"),
    _h("hooks", "custom_backward_allocates",
       "class Bomb(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
       "        return x * 2\n\n    @staticmethod\n    def backward(ctx, g):\n"
       "        return g + torch.ones(30000, 30000).sum()\n\n"
       "x = torch.ones(2, requires_grad=True)\nBomb.apply(x).sum().backward()", "limit",
       "elements"),
    _h("hooks", "lambda_lr_allocates",
       "m = nn.Linear(1, 1)\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
       "s = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: torch.ones(30000, 30000).sum())",
       "limit", "elements"),
    _h("hooks", "collate_loops",
       "from torch.utils.data import DataLoader, TensorDataset\ndef collate(batch):\n"
       "    while True:\n        pass\nloader = DataLoader(TensorDataset(torch.ones(4)), "
       "collate_fn=collate)\nfor b in loader:\n    pass", "limit"),
    _h("hooks", "jacobian_allocates",
       "def f(x):\n    return x * torch.ones(30000, 30000).sum()\n"
       "j = torch.autograd.functional.jacobian(f, torch.ones(2))", "limit", "elements"),
    _h("hooks", "checkpoint_context_fn",
       "from torch.utils.checkpoint import checkpoint\n"
       "y = checkpoint(lambda x: x * 2, torch.ones(2, requires_grad=True), use_reentrant=False, "
       "context_fn=print)", "refused", "context_fn"),
    _h("hooks", "runs_after_the_program",
       "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
       "        self.extra_repr = lambda: print('x' * 99999) or 'late'\n\nnet = Net()\n"
       "print('done')", "runs", "done"),
    _h("hooks", "module_apply_loops",
       "def f(m):\n    while True:\n        pass\nm = nn.Sequential(nn.Linear(1, 1))\n"
       "m.apply(f)", "limit"),
    # -- infinite loops and deep recursion ---------------------------------------------
    _h("loops", "while_true", "while True:\n    pass", "limit"),
    _h("loops", "huge_range", "for i in range(10 ** 12):\n    pass", "limit"),
    _h("loops", "recursion", "def f(n):\n    return f(n + 1)\nf(0)", "limit", "nested"),
    _h("loops", "lambda_recursion", "f = lambda n: f(n + 1)\nf(0)", "limit", "nested"),
    _h("loops", "forward_recursion",
       "class Net(nn.Module):\n    def forward(self, x):\n        return self(x)\n\n"
       "y = Net()(torch.ones(1))", "limit", "nested"),
    _h("loops", "list_of_huge_range", "x = list(range(10 ** 12))", "limit", "items"),
    # -- output floods --------------------------------------------------------------------
    _h("output", "print_loop", "for i in range(10 ** 7):\n    print(i)", "limit",
       "characters of output"),
    _h("output", "print_huge_string", "print('x' * 999999)", "limit", "characters"),
    _h("output", "print_star_range", "print(*range(10 ** 6))", "limit", "characters"),
    _h("output", "print_huge_separator", "print(*range(10 ** 6), sep='x' * 99999)", "limit",
       "characters"),
    # -- exceptions whose text is huge or looks like a traceback -----------------------------
    _h("exceptions", "assert_huge_message", "assert False, 'x' * 900000", "error",
       "AssertionError"),
    _h("exceptions", "key_error_huge", "d = {}\nv = d['k' * 900000]", "error", "KeyError"),
    _h("exceptions", "value_error_huge", "n = int('x' * 900000)", "error", "ValueError"),
    _h("exceptions", "fake_traceback",
       "assert False, 'a\\nTraceback (most recent call last):\\n  File \"/work/main/x.py\"'",
       "error", "AssertionError"),
    _h("exceptions", "huge_int_repr", "x = 2 ** 4000\nprint(x * 10 ** 900)", "limit", "bits"),
    # -- faking a result ------------------------------------------------------------------
    _h("fake", "json_result",
       "print('{\"ok\": true, \"graph\": {\"nodes\": []}, \"error\": null}')", "runs",
       '"ok": true'),
    _h("fake", "pickle_bytes_text", "print('\\x80\\x04\\x95\\x10\\x00gradlab.result')", "runs",
       "gradlab.result"),
    _h("fake", "many_result_lines",
       "for i in range(50):\n    print('{\"kind\": \"result\", \"error\": null}')", "runs",
       '"kind": "result"'),
)  # fmt: skip
