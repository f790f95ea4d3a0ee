"""Every service's OpenAPI document, fuzzed by schemathesis against the running processes: no
input yields a 5xx, and every documented answer conforms to its schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.client import ADMIN_AUTH, SERVICE_AUTH
from tools.stack import Stack

SERVICES = ["order", "user", "payment", "concert", "data_platform", "orchestrator"]
# Not fuzzed: the switches that make a service fail or slow down on purpose (tests and demos
# only), which would leave the services broken for the tests that follow.
SWITCHES = r"^/_(faults|control)"
EXAMPLES = 20  # per operation: bounded, so the suite stays fast


def _fuzz(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        # With the right token, so that fuzzing reaches past authentication.
        auth = ADMIN_AUTH if case.path.startswith("/admin") else SERVICE_AUTH
        case.call_and_validate(
            headers=auth, checks=[not_a_server_error, response_schema_conformance]
        )

    run()


@pytest.mark.parametrize("service", SERVICES)
def test_no_input_yields_a_5xx_and_every_answer_conforms(stack: Stack, service: str):
    schema = schemathesis.openapi.from_url(f"{stack.url(service)}/openapi.json")
    operations = [
        result.ok() for result in schema.exclude(path_regex=SWITCHES).get_all_operations()
    ]
    assert operations
    failures = []
    for operation in operations:
        try:
            _fuzz(operation)
        except Exception as failure:  # a failing check, with the example that broke it
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    assert not failures, "\n\n".join(failures)
