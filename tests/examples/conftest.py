"""Shared set-up of the example tests: the repository root on ``sys.path``, and tfds mocks."""

import pathlib
import sys
import tempfile

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

# `examples` is a package at the repository root, not an installed one.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_pytest(tmp_path_factory):
    """Temporary files of the example tests, and of the processes they start, under pytest's
    own temporary folder (of which pytest keeps the last three runs): tfds leaves an empty
    folder in the system's for each dataset it opens offline (``initialize_from_bucket``)."""
    folder = str(tmp_path_factory.mktemp("tempfile"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", folder)
        patch.setenv("TMPDIR", folder)
        yield


def fixed_getitems(record_keys, generator, serialized=False):
    """tfds 4.9.10's mock binds its ``__getitems__`` without ``self``: the keys come first."""
    assert not serialized, "serialized reads are not mocked"
    return [generator[key] for key in record_keys]


@pytest.fixture(scope="session")
def mock_tfds():
    """``tfds.testing.mock_data``, with batched reads (``source.__getitems__``) working.

    Use as ``with mock_tfds(num_examples=32): ...``.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mocking, "_getitems", fixed_getitems)
        yield tfds.testing.mock_data
