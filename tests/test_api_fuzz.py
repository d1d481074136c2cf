"""Schemathesis over the app's own OpenAPI document: no generated request gets a 5xx, every 4xx is ``{error, detail}``.

Requests are generated from ``/openapi.json`` for every operation, in both modes: *positive* (bodies and
parameters the document allows) and *negative* (ones it forbids: wrong types, missing fields, values
past the limits, broken headers), first by Schemathesis's coverage phase (each declared bound, its
neighbours, missing and extra parts, other methods on the path), then by its random fuzzing phase.
They are sent in-process to the ASGI app with the admin key, which may call everything.
``start_cycle`` and ``retrain_without`` are left out: each would train a model; so is ``stream_events``,
which streams until the client leaves.

Generated ``input`` objects almost never fit the task, so some positive cases get a real 3x3 pixel
array instead, and some get the id of a user (and of that user's interaction) seeded beforehand, so
requests reach the store, the exports and the erasure instead of stopping at validation.

Generation is derandomized, so a run is reproducible; ``DATAWHEEL_FUZZ_EXAMPLES`` sets the examples per
operation and mode (default 80: about 3,500 cases in all, some 30 s on two cores).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from conftest import ADMIN, APP, make_client

EXAMPLES = int(os.environ.get("DATAWHEEL_FUZZ_EXAMPLES", "80"))
EXCLUDED = ["start_cycle", "retrain_without",  # each starts a training cycle
            "stream_events"]  # streams until the client leaves (tests/test_events.py)
SEEDED_USERS = ("fuzz-a", "fuzz-b")
PIXELS = st.lists(st.lists(st.integers(0, 255), min_size=3, max_size=3), min_size=3, max_size=3)


def seed(client) -> dict[str, str]:
    """A few users with an interaction each, so generated requests can name someone who exists."""
    interactions = {}
    for user in SEEDED_USERS:
        resp = client.post("/v1/predict", headers=APP, json={"user_id": user, "input": {"pixels": [[0, 255, 0]] * 3},
                                                             "consent": {"training": True}})
        assert resp.status_code == 200, resp.text
        interactions[user] = resp.json()["interaction_id"]
    return interactions


def aim(case: Any, pick: int, pixels: list[list[int]], interactions: dict[str, str]) -> None:
    """Point a positive case at real data: a valid input, a seeded user, that user's interaction."""
    user = SEEDED_USERS[pick % len(SEEDED_USERS)]
    if isinstance(case.body, dict):
        if "input" in case.body:
            case.body["input"] = {"pixels": pixels}
        if "user_id" in case.body:
            case.body["user_id"] = user
        if "interaction_id" in case.body:
            case.body["interaction_id"] = interactions[user]
    if case.path_parameters and "user_id" in case.path_parameters:
        case.path_parameters["user_id"] = user


def problem(resp: Any) -> str | None:
    """Why this answer breaks the contract, or None."""
    if resp.status_code >= 500:
        return f"{resp.status_code}: {resp.text[:300]}"
    if 400 <= resp.status_code < 500:
        try:
            body = resp.json()
        except json.JSONDecodeError:
            return f"{resp.status_code} is not JSON: {resp.text[:300]}"
        if not (isinstance(body, dict) and set(body) == {"error", "detail"}
                and isinstance(body["error"], str) and isinstance(body["detail"], str)):
            return f"{resp.status_code} is not {{error, detail}}: {resp.text[:300]}"
    return None


def check(operation: Any, mode: GenerationMode, case: Any, resp: Any, seen: Counter, failures: list[str]) -> None:
    seen[resp.status_code // 100] += 1
    why = problem(resp)
    if why is None and mode is GenerationMode.POSITIVE and resp.status_code != 405:
        try:
            case.validate_response(resp, checks=[response_schema_conformance], headers=ADMIN)
        except (AssertionError, BaseExceptionGroup) as exc:  # one failure, or schemathesis's FailureGroup of them
            why = f"answer does not match the document: {str(exc)[:300]}"
    if why is not None:
        failures.append(f"{operation.label} ({mode.value}): {why}\n  {case.as_curl_command()}")


def coverage(schema: Any, operation: Any, seen: Counter, failures: list[str]) -> None:
    """The deterministic boundary cases Schemathesis derives from each declared constraint."""
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    for case in schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode),
                                           generation_config=generation):
        mode = GenerationMode.POSITIVE if case.meta is None else case.meta.generation.mode
        check(operation, mode, case, case.call(headers=ADMIN), seen, failures)


def fuzz(operation: Any, mode: GenerationMode, interactions: dict[str, str], seen: Counter,
         failures: list[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), aimed=st.booleans(), pick=st.integers(0, 9),
           pixels=PIXELS)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case: Any, aimed: bool, pick: int, pixels: list[list[int]]) -> None:
        if mode is GenerationMode.POSITIVE and aimed:
            aim(case, pick, pixels, interactions)
        check(operation, mode, case, case.call(headers=ADMIN), seen, failures)

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no invalid request


def test_no_generated_request_gets_a_5xx_and_every_4xx_has_the_error_shape(ws, capsys):
    with make_client(ws) as client:
        interactions = seed(client)
        schema = schemathesis.openapi.from_asgi("/openapi.json", client.app).exclude(operation_id=EXCLUDED)
        seen: Counter = Counter()
        failures: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 23 and not {op.definition.raw.get("operationId") for op in operations} & set(EXCLUDED)
        for operation in operations:
            coverage(schema, operation, seen, failures)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(operation, mode, interactions, seen, failures)
    total = sum(seen.values())
    with capsys.disabled():
        print(f"\nfuzz: {total} cases over {len(operations)} operations; by status class "
              f"{dict(sorted((f'{k}xx', v) for k, v in seen.items()))}; 5xx: {seen[5]}; "
              f"excluded: {', '.join(EXCLUDED)}")
    assert not failures, f"{len(failures)} of {total} cases broke the contract:\n" + "\n".join(failures[:20])
    assert seen[5] == 0
    assert total >= 20 * EXAMPLES  # the run really generated cases for the operations
