"""Which listener each worker serves when operators have a listener of their own."""

from __future__ import annotations

import socket

from flagsvc.serving.roles import EVERYTHING, OPERATOR, SDK, listeners_for, role_for_new_worker


def test_the_first_worker_without_a_live_operator_worker_becomes_it() -> None:
    assert role_for_new_worker([]) == OPERATOR
    assert role_for_new_worker([OPERATOR]) == SDK
    assert role_for_new_worker([SDK, SDK]) == OPERATOR  # the operator worker died: its replacement takes over
    assert role_for_new_worker([SDK, OPERATOR, SDK]) == SDK


def test_each_role_serves_its_own_listeners() -> None:
    sdk, operators = socket.socket(), socket.socket()
    try:
        sdk.bind(("127.0.0.1", 0))
        operators.bind(("127.0.0.1", 0))
        port = operators.getsockname()[1]
        both = [sdk, operators]
        assert listeners_for(OPERATOR, both, port) == [operators]
        assert listeners_for(SDK, both, port) == [sdk]
        assert listeners_for(EVERYTHING, both, port) == both
        assert listeners_for(SDK, both, None) == both  # no operator listener: everyone serves everything
    finally:
        sdk.close()
        operators.close()
