import pytest

from tests.e2e.client import Api
from tools.stack import Stack, start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def stack(databases, tmp_path_factory) -> Stack:
    stack = start_stack(tmp_path_factory.mktemp("logs"))
    yield stack
    stack.stop()


@pytest.fixture
def api(stack: Stack) -> Api:
    api = Api(stack)
    api.clear_faults()
    api.platform_control()
    yield api
    api.clear_faults()
    api.platform_control()
    api.close()
