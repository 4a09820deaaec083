"""The ``draft_method`` fixture: core engine tests run once per draft method (see `tests.utils.METHOD_OPTIONS`)."""

from __future__ import annotations

import pytest

from tests.utils import METHOD_OPTIONS


@pytest.fixture(params=list(METHOD_OPTIONS))
def draft_method(request) -> str:
    """A draft-head variant: jakiro, eagle2, jakiro_star (static tree), jakiro_star-dynamic or kangaroo."""
    return request.param
