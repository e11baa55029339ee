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


def test_trimming_workers_keeps_the_youngest_operator_worker_and_the_youngest_others() -> None:
    from flagsvc.serving.roles import workers_to_retire

    # Started: operator 1 (oldest), SDK 2 and 3. A reload forks 4 (SDK: an operator lives), 5 and 6.
    after_reload = {1: (1, OPERATOR), 2: (2, SDK), 3: (3, SDK), 4: (4, SDK), 5: (5, SDK), 6: (6, SDK)}
    assert sorted(workers_to_retire(after_reload, 3)) == [2, 3, 4]  # gunicorn's own rule would stop 1, 2, 3
    assert workers_to_retire({1: (1, OPERATOR), 2: (2, SDK)}, 2) == []
    assert sorted(workers_to_retire({1: (1, OPERATOR), 2: (2, SDK), 3: (3, SDK)}, 2)) == [2]  # TTOU
    # Two operator workers (one being replaced): the younger is kept.
    assert sorted(workers_to_retire({1: (1, OPERATOR), 2: (2, SDK), 7: (7, OPERATOR)}, 2)) == [1]
    # No roles (one listener): gunicorn's rule, the oldest go.
    assert sorted(workers_to_retire({1: (1, EVERYTHING), 2: (2, EVERYTHING), 3: (3, EVERYTHING)}, 2)) == [1]
