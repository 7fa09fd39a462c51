"""GradLab's process-wide ``nn.Module`` hooks, installed only while some thread uses them.

A global module hook slows every module call in the process, so each set of
GradLab's is installed when its first user acquires it and removed when its
last user releases it (reference-counted, thread-safe). The hook functions
themselves look for state of their own thread, so a thread that does not
listen is not affected. :func:`gradlab.record` (module paths) and the
debugger's layer watch both hold theirs through a :class:`GlobalHooks`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.modules import module as nn_module

ForwardPre = Callable[[torch.nn.Module, Any], None]
Forward = Callable[[torch.nn.Module, Any, Any], None]
Parameter = Callable[[torch.nn.Module, str, Any], None]


class GlobalHooks:
    """A set of torch's global module hooks that exist while at least one user holds them.

    ``forward_pre`` and ``forward`` are ``register_module_forward_pre_hook`` and
    ``register_module_forward_hook`` hooks (``always_call``: ``forward`` runs
    even when the module raised), ``parameter`` a
    ``register_module_parameter_registration_hook`` one; ``kernels`` makes a
    ``torch.library.Library`` of kernels that lives as long as the hooks.

    Examples
    --------
    >>> seen = []
    >>> hooks = GlobalHooks(forward=lambda module, args, output: seen.append(module))
    >>> layer = torch.nn.Linear(2, 2)
    >>> hooks.acquire(); _ = layer(torch.ones(2)); hooks.release()
    >>> _ = layer(torch.ones(2))  # released: not seen
    >>> seen == [layer]
    True
    """

    def __init__(
        self,
        *,
        forward_pre: ForwardPre | None = None,
        forward: Forward | None = None,
        always_call: bool = False,
        parameter: Parameter | None = None,
        kernels: Callable[[], torch.library.Library] | None = None,
    ) -> None:
        self._forward_pre, self._forward, self._always_call = forward_pre, forward, always_call
        self._parameter, self._kernels = parameter, kernels
        self._lock = threading.Lock()
        self._handles: list[Any] = []
        self._users = 0

    def acquire(self) -> None:
        """Install the hooks if nobody holds them yet; count one more user."""
        with self._lock:
            if self._users == 0:
                self._install()
            self._users += 1

    def release(self) -> None:
        """Count one user less; remove the hooks when it was the last."""
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for handle in self._handles:
                    if isinstance(handle, torch.library.Library):
                        handle._destroy()  # type: ignore[no-untyped-call]
                    else:
                        handle.remove()
                self._handles.clear()

    def _install(self) -> None:
        handles = self._handles
        if self._forward_pre is not None:
            handles.append(nn_module.register_module_forward_pre_hook(self._forward_pre))
        if self._forward is not None:
            handles.append(
                nn_module.register_module_forward_hook(self._forward, always_call=self._always_call)
            )
        if self._parameter is not None:
            handles.append(nn_module.register_module_parameter_registration_hook(self._parameter))
        if self._kernels is not None:
            handles.append(self._kernels())
