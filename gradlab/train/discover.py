"""Where training scenarios come from: the built-ins and installed plugins.

:func:`discover` finds

* the built-ins, one file each in the source checkout's ``plugins/`` folder or
  the installed wheel's ``gradlab_plugins`` folder, loaded by file path;
* third-party packages, through the entry-point group ``gradlab.plugins``
  (each entry point names a :class:`~gradlab.train.scenario.Scenario` object).

``GRADLAB_DISABLE_PLUGIN_AUTOLOAD=1`` stops third-party entry points from
loading by themselves; ``GRADLAB_PLUGINS=a,b`` loads only the plugins named
(built-in scenario names, which are their file names, or entry-point names), third-party ones
included even when autoloading is disabled. A plugin that fails to import or
breaks the contract (:func:`~gradlab.train.scenario.check_scenario`) becomes a
:class:`LoadError` naming it; the others load.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gradlab.train.params import PluginError
from gradlab.train.scenario import Scenario, check_scenario

ENTRY_POINT_GROUP = "gradlab.plugins"
ENV_DISABLE_AUTOLOAD = "GRADLAB_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "GRADLAB_PLUGINS"


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be used: its name, where it came from, and why."""

    name: str
    source: str
    message: str


@dataclass(frozen=True)
class Plugins:
    """What :func:`discover` found: scenarios by name, where each came from, and failures."""

    scenarios: Mapping[str, Scenario]
    sources: Mapping[str, str]
    errors: tuple[LoadError, ...]

    def get(self, name: str) -> Scenario:
        """The scenario ``name``; a clear error lists the known ones and any load failure."""
        scenario = self.scenarios.get(name)
        if scenario is not None:
            return scenario
        failed = [e for e in self.errors if e.name == name]
        if failed:
            raise PluginError(f"The plugin '{name}' failed to load: {failed[0].message}")
        known = ", ".join(sorted(self.scenarios)) or "none"
        raise PluginError(f"Unknown scenario '{name}'. Installed scenarios: {known}.")


def discover(refresh: bool = False) -> Plugins:
    """Load the built-in scenarios and the installed plugins (cached per environment).

    Examples
    --------
    >>> plugins = discover()
    >>> plugins.get("linear_regression").title
    'Linear regression'
    """
    key = (os.environ.get(ENV_DISABLE_AUTOLOAD, ""), os.environ.get(ENV_PLUGINS, ""))
    if refresh:
        _discover.cache_clear()
    return _discover(key)


@functools.cache
def _discover(key: tuple[str, str]) -> Plugins:
    disabled, wanted_text = key
    wanted = {w.strip() for w in wanted_text.split(",") if w.strip()} or None
    autoload = disabled.strip().lower() not in ("1", "true", "yes")
    found: list[tuple[str, str, Callable[[], object]]] = []  # (name, source, loader)
    for path in builtin_files():
        if wanted is None or path.stem in wanted:
            found.append((path.stem, f"built-in {path.name}", functools.partial(_load_file, path)))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (autoload and wanted is None) or (wanted is not None and ep.name in wanted):
            dist = ep.dist.name if ep.dist is not None else "?"
            found.append((ep.name, f"entry point {ep.value} ({dist})", ep.load))
    scenarios: dict[str, Scenario] = {}
    sources: dict[str, str] = {}
    errors: list[LoadError] = []
    for name, source, load in found:
        try:
            scenario = check_scenario(load(), name)
        except Exception as exc:  # a broken plugin must not take the others down
            errors.append(LoadError(name, source, _describe(exc)))
            continue
        if scenario.name in scenarios:
            message = f"the name '{scenario.name}' is already taken by {sources[scenario.name]}"
            errors.append(LoadError(name, source, message))
            continue
        scenarios[scenario.name] = scenario
        sources[scenario.name] = source
    names = {n for n, _, _ in found} | set(scenarios)
    for missing in sorted((wanted or set()) - names):
        errors.append(
            LoadError(missing, ENV_PLUGINS, "no built-in or installed plugin has this name")
        )
    return Plugins(scenarios, sources, tuple(errors))


def builtin_files() -> list[Path]:
    """The built-in scenario files: the checkout's ``plugins/``, else the wheel's
    ``gradlab_plugins/`` (found without importing it)."""
    root = Path(__file__).resolve().parents[2]  # the checkout, or site-packages
    is_checkout = (root / "pyproject.toml").is_file() and (root / "plugins").is_dir()
    folder: Path | None = root / "plugins" if is_checkout else None
    if folder is None:
        spec = importlib.util.find_spec("gradlab_plugins")
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations)))
    if folder is None:
        return []
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def _load_file(path: Path) -> object:
    """Import a built-in scenario file by path and return its ``SCENARIO``."""
    module_name = f"gradlab_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    if not hasattr(module, "SCENARIO"):
        raise PluginError(f"{path.name} defines no SCENARIO")
    return module.SCENARIO


def _describe(exc: BaseException) -> str:
    """One line: the exception, and the plugin's own line that raised it when there is one."""
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    ours = (__file__, check_scenario.__code__.co_filename)  # discovery, the contract's checks
    own = [f for f in frames if "importlib" not in f.filename and f.filename not in ours]
    if own and not isinstance(exc, PluginError):
        text += f" ({Path(own[-1].filename).name}, line {own[-1].lineno})"
    return text
