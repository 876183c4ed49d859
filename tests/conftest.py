"""Shared test configuration.

The legacy fixtures and the CIFAR-10 JPEG archive live in ``../shared``
beside the checkout (CI always has it). Tests that need it FAIL when it is
missing; they never skip.
"""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("LASRES_SHARED", REPO.parent / "shared"))
LEGACY = SHARED / "fixtures" / "legacy"


def require_shared():
    """Return the shared folder, failing loudly when it is absent."""
    if not (LEGACY.is_dir() and (SHARED / "data" / "cifar10-jpeg.tar.gz").is_file()):
        pytest.fail(f"the shared test material is missing: expected {LEGACY} and "
                    f"{SHARED / 'data' / 'cifar10-jpeg.tar.gz'} (set LASRES_SHARED to its folder)")
    return SHARED


@pytest.fixture(scope="session")
def shared_dir():
    return require_shared()


@pytest.fixture(scope="session")
def legacy_dir(shared_dir):
    return shared_dir / "fixtures" / "legacy"
