from __future__ import annotations

import os
from pathlib import Path

import pytest
from detection_helpers import REPO, VECTORS


def shared_dir() -> Path:
    env = os.environ.get("ACCORD_SHARED_DIR")
    return Path(env) if env else (REPO / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def highres_dir() -> Path:
    d = shared_dir() / "data" / "images" / "highres"
    if not d.is_dir():
        pytest.skip("shared/data/images/highres not found (set ACCORD_SHARED_DIR)")
    return d


@pytest.fixture(scope="session")
def vectors() -> Path:
    return VECTORS
