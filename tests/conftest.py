"""Shared fixtures: the AV-digits datasets, built once per test session.

`av_digits_dir` is a lazy handle; each config is prepared the first time a
test asks for it (pairs takes ~15 s, captions ~2 min on 2 idle cores), into one
directory shared by all tests of the session, and by all pytest-xdist
workers of the run (the preparation in `sources.get_builder` holds a file
lock, so workers never build a config twice). Set AVJAX_TEST_DATA_DIR to
keep the datasets between sessions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

from avjax.data.pipeline import sources

# One persistent XLA compilation cache for the whole run: the pytest-xdist
# workers, the launcher subprocesses and the notebook kernels inherit it
# through the environment, so the many runs of one quick config (end-to-end,
# resume, notebook, inference, benchmark tests) compile each step once.
_XLA_CACHE_ENV = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
_OWNED_CACHE: list[str] = []


def pytest_configure(config):
  del config
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # The controller (or a plain run) creates it; xdist workers inherit it.
    path = tempfile.mkdtemp(prefix="avjax_test_xla_cache_")
    _OWNED_CACHE.append(path)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
  for key, value in _XLA_CACHE_ENV.items():
    os.environ.setdefault(key, value)
  if "jax" in sys.modules:  # Read from the environment only at import.
    jax = sys.modules["jax"]
    jax.config.update(
        "jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"]
    )
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )
    jax.config.update(
        "jax_persistent_cache_min_entry_size_bytes",
        int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
    )


def pytest_collection_modifyitems(session, config, items):
  """Runs the modules with the most ``slow`` tests first.

  pytest-xdist's ``worksteal`` hands each worker a contiguous part of this
  order and an idle worker steals from the end of another's queue, so
  starting the minutes-long runs first leaves short tests for the end,
  where they balance the two workers, instead of one long run finishing
  alone. Each module's tests stay together and in order (module-scoped
  fixtures are built once per worker as before).
  """
  del session, config
  module = lambda item: item.nodeid.split("::", 1)[0]
  slow_count: dict[str, int] = {}
  first_index: dict[str, int] = {}
  for i, item in enumerate(items):
    first_index.setdefault(module(item), i)
    slow_count[module(item)] = slow_count.get(module(item), 0) + (
        item.get_closest_marker("slow") is not None
    )
  items.sort(
      key=lambda item: (-slow_count[module(item)], first_index[module(item)])
  )


def pytest_unconfigure(config):
  del config
  for path in _OWNED_CACHE:
    shutil.rmtree(path, ignore_errors=True)


class AvDigitsData:
  """Lazily prepared AV-digits configs in one tfds data dir."""

  def __init__(self, data_dir: pathlib.Path):
    self.data_dir = str(data_dir)
    self._prepared: set[str] = set()

  def prepare(self, config: str) -> str:
    """Prepares av_digits/<config> (once); returns the data dir."""
    if config not in self._prepared:
      sources.get_builder(f"av_digits/{config}", data_dir=self.data_dir)
      self._prepared.add(config)
    return self.data_dir

  def source(self, config: str, split: str):
    """The data source of av_digits/<config>, split `split`."""
    self.prepare(config)
    return sources.load_source(
        f"av_digits/{config}", split, data_dir=self.data_dir
    )


@pytest.fixture(scope="session")
def av_digits_dir(request, tmp_path_factory) -> AvDigitsData:
  """Lazy AV-digits handle (see the module docstring)."""
  configured = os.environ.get("AVJAX_TEST_DATA_DIR")
  if configured:
    root = pathlib.Path(configured)
  elif hasattr(request.config, "workerinput"):  # a pytest-xdist worker
    root = tmp_path_factory.getbasetemp().parent / "av_digits_shared"
  else:
    root = tmp_path_factory.getbasetemp() / "av_digits_shared"
  root.mkdir(parents=True, exist_ok=True)
  return AvDigitsData(root)


@pytest.fixture(scope="session")
def av_digits_pairs_dir(av_digits_dir: AvDigitsData) -> str:
  """tfds data dir with av_digits/pairs prepared."""
  return av_digits_dir.prepare("pairs")


@pytest.fixture(scope="session")
def av_digits_captions_dir(av_digits_dir: AvDigitsData) -> str:
  """tfds data dir with av_digits/captions prepared."""
  return av_digits_dir.prepare("captions")


@pytest.fixture(scope="session")
def av_digits_data_dir(av_digits_dir: AvDigitsData) -> str:
  """tfds data dir with av_digits/pairs and av_digits/captions prepared."""
  av_digits_dir.prepare("pairs")
  return av_digits_dir.prepare("captions")


class _Lowerings(logging.Handler):
  """Counts the XLA programs JAX lowers while attached (``count``)."""

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.count = 0

  def emit(self, record: logging.LogRecord) -> None:
    if record.getMessage().startswith("Finished jaxpr to MLIR module"):
      self.count += 1


@pytest.fixture
def count_lowerings():
  """``with count_lowerings() as n: ...`` then ``n.count``: XLA programs
  built inside the block (every jitted function and every op run outside
  ``jit`` lowers one program; JAX's in-memory caches are cleared first, so
  a program built by an earlier test counts again)."""
  import jax  # pylint: disable=import-outside-toplevel

  @contextlib.contextmanager
  def counting():
    jax.clear_caches()
    counter = _Lowerings()
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    try:
      with jax.log_compiles(True):
        yield counter
    finally:
      logger.removeHandler(counter)

  return counting
