"""Pipeline: named sources and models, and their graph; loaded from a Python file or module that
defines `pipeline`."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.graph import Graph, check_name
from engine.load.extraction import Source
from engine.publish.base import check_name as check_table_name
from engine.sources.base import HasBaseDir
from engine.transform.models import Model


@dataclass
class Pipeline:
    """What to extract and load, and which models to build from it."""

    name: str
    sources: Sequence[Source] = ()
    models: Sequence[Model] = ()
    base_dir: Path | None = None  # where headwater.toml and relative paths start; set by load_pipeline
    source_file: Path | None = None  # the file that defines it; set by load_pipeline (for the run manifest)
    models_dir: str | Path | None = "models"  # SQL models: its *.sql files (relative: beside the pipeline file)

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting `base_dir` hands it to the sources: their relative paths (files, a SQLite
        database) start there, as `headwater.toml`'s do, whatever the working directory."""
        if name == "base_dir" and value is not None:
            value = Path(value)
            for source in self.sources:
                if isinstance(source, HasBaseDir):
                    source.base_dir = value
        super().__setattr__(name, value)

    def __post_init__(self) -> None:
        self.models = [*self.models, *self._sql_files(_caller_dir())]
        for m in self.models:
            if not isinstance(m, Model):
                raise ConfigError(f"pipeline {self.name!r}: {m!r} is not a model",
                                  "decorate model functions with @model(inputs=...)")
        for kind, items in (("source", self.sources), ("model", self.models)):
            for item in items:
                check_name(kind, item.name)
            _check_unique(self.name, kind, [i.name for i in items])
        for m in self.models:
            if m.publish:
                _check_warehouse_name(m.name)
        self.graph = Graph.build([s.name for s in self.sources], list(self.models))
        by_name = {m.name: m for m in self.models}
        self.ordered_models = [by_name[name] for name in self.graph.models]  # each after what it reads

    def _sql_files(self, caller: Path | None) -> list[Model]:
        """The SQL models of `models_dir`: relative to `base_dir`, else to the folder of the file
        that made this Pipeline. A missing folder is an error only when it was asked for."""
        if self.models_dir is None:
            return []
        folder = Path(self.models_dir)
        if not folder.is_absolute():
            base = self.base_dir or caller
            if base is None:
                return []
            folder = base / folder
        if not folder.is_dir():
            if str(self.models_dir) != "models":
                raise ConfigError(f"pipeline {self.name!r}: models_dir {str(folder)!r} is not a folder",
                                  "create it (its *.sql files are SQL models), or pass models_dir=None")
            return []
        from engine.transform.sql import sql_files

        return sql_files(folder)

    def source(self, name: str) -> Source:
        """The source called `name`."""
        return _find(self.sources, name, "source", self.name)

    def model(self, name: str) -> Model:
        """The model called `name`."""
        return _find(self.models, name, "model", self.name)


def _caller_dir() -> Path | None:
    """The folder of the file whose code made the Pipeline being initialised (None: no file)."""
    frame = sys._getframe(1)
    here = Path(__file__).resolve()
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith("<") and Path(name).resolve() != here:
            return Path(name).resolve().parent
        if name.startswith("<") and name not in ("<string>",):
            return None  # an interactive session or exec'd code: no file to be beside
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _check_unique(pipeline: str, kind: str, names: list[str]) -> None:
    """Raise ConfigError when two of `names` are equal, or equal but for case: one lake folder on
    a case-insensitive file system, one table in a warehouse that folds case (DuckDB)."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"pipeline {pipeline!r}: duplicate {kind} name(s) {dupes}",
                          f"give each {kind} a unique name")
    folded: dict[str, list[str]] = {}
    for n in names:
        folded.setdefault(n.lower(), []).append(n)
    clashes = [sorted(group) for group in folded.values() if len(group) > 1]
    if clashes:
        raise ConfigError(f"pipeline {pipeline!r}: {kind} names {clashes[0]} differ only in case",
                          "they would share one lake folder on a case-insensitive file system and one "
                          f"warehouse table where names fold case: rename one {kind}")


def _check_warehouse_name(model: str) -> None:
    """Raise ConfigError unless a published model's name can be its warehouse table's."""
    try:
        check_table_name(model)
    except ConfigError as exc:
        raise ConfigError(f"model {model!r} cannot be published: {exc.message}",
                          exc.hint or "rename the model, or declare it with publish=False") from None


def _find(items: Sequence[Any], name: str, kind: str, pipeline: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    raise ConfigError(f"pipeline {pipeline!r} has no {kind} {name!r}",
                      f"{kind}s are {sorted(i.name for i in items)}")


def load_pipeline(target: str | Path) -> Pipeline:
    """The `pipeline` defined by a `.py` file or an importable module name."""
    target = str(target)
    path = Path(target)
    if target.endswith(".py") or path.exists():
        if path.is_dir():
            path = path / "pipeline.py"
        if not path.is_file():
            raise ConfigError(f"no pipeline file at {target}", "pass a .py file or a module name")
        module_name = f"headwater_pipeline_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        base = path.resolve().parent
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"cannot import pipeline module {target!r}: {exc}",
                              "pass a path to a .py file, or a module on PYTHONPATH") from exc
        base = Path(module.__file__ or ".").resolve().parent
    pipeline = getattr(module, "pipeline", None)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"{target} defines no `pipeline` (a headwater.Pipeline)",
                          "add `pipeline = Pipeline(name, sources=[...], models=[...])` at module level")
    if pipeline.base_dir is None:
        pipeline.base_dir = base
    if pipeline.source_file is None:
        pipeline.source_file = Path(module.__file__).resolve() if module.__file__ else None
    return pipeline
