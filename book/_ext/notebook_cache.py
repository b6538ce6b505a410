"""Execute the book's notebooks in parallel, once, and never show stale outputs.

A Sphinx extension for Jupyter Book 1.x (myst-nb with ``execute_notebooks: cache``).

myst-nb's cache (jupyter-cache) recognises a notebook by the source of its code
cells only. A chapter's outputs also depend on the code it imports
(``course_lib``), on the installed packages and on the ``COURSE_*`` settings;
with jupyter-cache alone, a change to any of them would leave old outputs in the
book (jupyter-cache issue 7, jupyter-book issue 1633). This extension keys the
whole cache on an *environment key* as well:

* the key is a hash of every file under the configured source folders
  (``course_cache_sources``, default ``["course_lib"]``), of the name and
  version of every installed distribution, of the Python version and of the
  ``COURSE_*`` environment variables;
* when the key differs from the one the cache was filled under, the cache is
  emptied and every notebook is marked outdated, so Sphinx reads it again;
* before Sphinx reads the outdated documents, every notebook among them that
  the cache does not hold is executed, ``course_execution_workers`` at a time
  (default: one per CPU core), and stored in the cache; myst-nb then finds
  every notebook there and executes nothing itself.

So ``jupyter-book build`` executes a notebook only when its code, the library
or the environment changed, and a build with nothing changed executes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
KEY_FILE = "course-environment-key.json"
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def environment_key(source_folders: list[Path]) -> dict[str, str]:
    """What a notebook's outputs depend on besides its own code, each part hashed.

    Returns ``{part: sha256 hex}``; two environments give the same dict exactly
    when the library sources, the installed distributions, the Python version
    and the ``COURSE_*`` settings are the same.
    """
    parts: dict[str, str] = {}
    for folder in source_folders:
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder)
            if SKIPPED_PARTS & set(relative.parts) or path.suffix == ".pyc":
                continue
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
        parts[f"sources:{folder.name}"] = digest.hexdigest()
    distributions = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()})
    parts["distributions"] = hashlib.sha256("\n".join(distributions).encode()).hexdigest()
    parts["python"] = sys.version
    settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("COURSE_"))
    parts["settings"] = hashlib.sha256("\n".join(settings).encode()).hexdigest()
    return parts


def _execute(path: str, timeout: int | None, threads: int | None) -> tuple[str, dict | None, float, str | None]:
    """Execute one notebook in its own folder (runs in a worker process).

    Returns (path, executed notebook as a dict or None on failure, seconds, error text).
    """
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    if threads:
        # Several kernels share the cores: one BLAS/OpenMP pool each keeps them from thrashing.
        os.environ["OMP_NUM_THREADS"] = str(threads)
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False)
    if result.err is not None:
        return path, None, result.time, result.exc_string
    return path, result.nb, result.time, None


class NotebookCache:
    """The state of one build: where the cache is, and whether the environment changed."""

    def __init__(self, app: Sphinx):
        self.app = app
        self.path = Path(app.env.mystnb_config.execution_cache_path)
        sources = [Path(app.confdir, folder).resolve() for folder in app.config.course_cache_sources]
        self.key = environment_key(sources)
        self.environment_changed = self._stored_key() != self.key

    def _stored_key(self) -> dict | None:
        try:
            return json.loads((self.path / KEY_FILE).read_text())
        except (OSError, ValueError):
            return None

    def reset_if_environment_changed(self) -> None:
        if self.environment_changed:
            stored = self._stored_key()
            changed = sorted(k for k in self.key if stored is None or stored.get(k) != self.key[k])
            if self.path.exists():
                LOGGER.info(f"notebook cache: emptied, the environment changed ({', '.join(changed)})")
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / KEY_FILE).write_text(json.dumps(self.key, indent=1))

    def execute_missing(self, paths: list[Path]) -> dict[str, float]:
        """Execute, in parallel, every notebook of ``paths`` that the cache does not hold.

        Returns {path: seconds} of what was executed. A notebook that fails is
        reported as an error naming the notebook and the cell's traceback.
        """
        import nbformat
        from jupyter_cache import get_cache
        from jupyter_cache.base import CacheBundleIn

        cache = get_cache(str(self.path))
        missing = []
        for path in paths:
            try:
                cache.match_cache_notebook(nbformat.read(path, as_version=4))
            except KeyError:
                missing.append(path)
        if not missing:
            return {}
        workers = max(1, min(self.app.config.course_execution_workers or os.cpu_count() or 1, len(missing)))
        threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
        timeout = self.app.env.mystnb_config.execution_timeout
        LOGGER.info(f"notebook cache: executing {len(missing)} notebook(s), {workers} at a time")
        seconds, failures = {}, []
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_execute, str(p), timeout, threads) for p in missing]
            for future in as_completed(futures):
                path, nb, elapsed, error = future.result()
                name = os.path.relpath(path, self.app.srcdir)
                if error is not None:
                    failures.append(f"{name}:\n{error}")
                    continue
                stage = cache.add_nb_to_project(path)
                cache.cache_notebook_bundle(
                    CacheBundleIn(nb, stage.uri, data={"execution_seconds": elapsed}), check_validity=False, overwrite=True
                )
                seconds[name] = elapsed
                LOGGER.info(f"notebook cache: executed {name} in {elapsed:.1f} s")
        LOGGER.info(f"notebook cache: {len(seconds)} notebook(s) executed in {time.perf_counter() - start:.1f} s")
        if failures:
            raise ExtensionError("executing notebooks failed:\n" + "\n".join(failures))
        return seconds


def _notebook_docs(app: Sphinx, docnames) -> dict[str, Path]:
    paths = {}
    for docname in docnames:
        path = Path(app.env.doc2path(docname))
        if path.suffix == ".ipynb":
            paths[docname] = path
    return paths


def _builder_inited(app: Sphinx) -> None:
    if app.env.mystnb_config.execution_mode != "cache":
        return
    # Kept on the application, not on the environment that Sphinx pickles between builds.
    app.course_notebook_cache = NotebookCache(app)
    app.course_notebook_cache.reset_if_environment_changed()


def _outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    state = getattr(app, "course_notebook_cache", None)
    if state is None or not state.environment_changed:
        return []
    # Sphinx would keep the old pages of unchanged notebooks: their outputs may be stale now.
    return sorted(_notebook_docs(app, env.found_docs))


def _before_read(app: Sphinx, env, docnames: list[str]) -> None:
    state = getattr(app, "course_notebook_cache", None)
    if state is not None:
        state.execute_missing(list(_notebook_docs(app, docnames).values()))


def setup(app: Sphinx) -> dict:
    app.add_config_value("course_cache_sources", ["course_lib"], "env")
    app.add_config_value("course_execution_workers", 0, "env")
    # After myst-nb's own builder-inited handler, which sets the cache path.
    app.connect("builder-inited", _builder_inited, priority=900)
    app.connect("env-get-outdated", _outdated)
    app.connect("env-before-read-docs", _before_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
