"""Fixtures for the lawful-access tests (helpers live in access_world.py)."""

from __future__ import annotations

import pytest
from access_world import World, make_world


@pytest.fixture
def world() -> World:
    return make_world()
