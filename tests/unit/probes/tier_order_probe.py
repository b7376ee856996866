"""Run by tests/unit/test_tier_summary.py in a pytest of its own (the file name is not collected otherwise): a
skip, a pass and a warning, so -ra and the warnings summary have something to print before the tier summary."""

import warnings

import pytest


def test_skips():
    pytest.skip("a skip that -ra lists")


def test_warns():
    warnings.warn("a warning the summary lists", UserWarning, stacklevel=1)
