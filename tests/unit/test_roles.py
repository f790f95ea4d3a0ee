"""The two operator roles: which token is which, and tokens that may not be a viewer's."""

import pytest
from pydantic import ValidationError

from common.auth import Role, role_of
from orchestrator.config import Settings


@pytest.mark.parametrize(
    ("given", "viewer", "role"),
    [
        ("the-admin", "the-viewer", Role.ADMIN),
        ("the-viewer", "the-viewer", Role.VIEWER),
        ("someone", "the-viewer", None),
        ("", "the-viewer", None),
        ("the-admin", None, Role.ADMIN),
        ("", None, None),
        ("\0the-admin", None, None),  # what stands in for a missing viewer token matches nothing
        ("the-admin-and-more", "the-viewer", None),
    ],
)
def test_a_token_is_the_admin_s_the_viewer_s_or_nobody_s(given, viewer, role):
    assert role_of(given, "the-admin", viewer) is role


@pytest.mark.parametrize("viewer", ["", "dev-admin-token", "dev-service-token"])
def test_a_viewer_token_must_be_one_of_its_own(viewer):
    with pytest.raises(ValidationError, match="ADMIN_VIEWER_TOKEN"):
        Settings(admin_viewer_token=viewer)


def test_without_a_viewer_token_only_the_admin_token_is_an_operator():
    assert Settings().admin_viewer_token is None
