"""Broker mode (issue 15): the step holds no App key and no connection; the runkeys service
mints and answers the values sealed to this step's one-request key.

These tests run the action against a strict double (`tests.action.broker_double`), which can
answer what the real service should never (a key sealed to another step, a missing key); the
action against the real service is tests/action/test_broker_service.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from runkeys.errors import SpecError
from runkeys.spec import parse_keys
from tests.action.broker_double import BrokerDouble, ServedDouble
from tests.action.conftest import RUN_ID, GitHub
from tests.action.harness import MASK, SCAN, Run, unescape
from tests.action.service import AUDIENCE
from tests.encoded_forms import encoded_forms

PR = 17
KEYS = """\
API_TOKEN: {provider: random, ttl: 10m, lifetime: job}
DB: {provider: postgres, connection: ci_db, grant: [SELECT], ttl: 20m, lifetime: pr}
"""
PUBLIC_PARTS = ("HOST", "PORT", "DATABASE")
LOCAL_ONLY = ("INPUT_APP-ID", "INPUT_PRIVATE-KEY", "INPUT_GITHUB-TOKEN")


def pull_request_job(github: GitHub, service_url: str, pr: int) -> None:
    """The step: pull request `pr`'s job with `id-token: write`, `service-url` and nothing
    else (no App input, no connection)."""
    github.sandbox.add_workflow_run(github.repo, run_id=RUN_ID, event="pull_request")
    claims = github.sandbox.run_claims(github.repo, RUN_ID)
    claims = replace(claims, ref=f"refs/pull/{pr}/merge", event_name="pull_request")
    github.step.pull_request_event(pr)
    github.step.base_env.update(github.sandbox.runner_oidc_env(claims))
    github.step.base_env["INPUT_SERVICE-URL"] = service_url
    github.step.base_env["INPUT_AUDIENCE"] = AUDIENCE


@pytest.fixture
def broker(github: GitHub) -> Iterator[BrokerDouble]:
    """The double as `service-url`, the step a pull request's job with `id-token: write` and
    nothing else: no App input, no connection."""
    served = ServedDouble(github.sandbox.oidc_issuer_url)
    pull_request_job(github, served.url, PR)
    try:
        yield served.double
    finally:
        served.stop()


def run_seen(github: GitHub, inputs: dict[str, str]) -> tuple[Run, dict[str, str]]:
    """Run the main step and keep the environment it was started with."""
    seen: dict[str, str] = {}

    def keep(argv: list[str], env: dict[str, str]) -> list[str]:
        seen.update(env)
        return argv

    return github.step.run(inputs, wrap=keep), seen


def secret_values(double: BrokerDouble) -> list[str]:
    return [
        v
        for keys in double.minted.values()
        for m in keys
        for v in (m.value, *(p for n, p in m.parts.items() if n not in PUBLIC_PARTS))
    ]


def assert_masked_before_anything_else(run: Run, values: list[str]) -> None:
    """Every form of every secret value is masked, every stdout line before the last mask is a
    mask, and no other line carries any form."""
    forms = {form for value in values for form in encoded_forms(value)}
    assert not forms - set(run.masks), "a form of a value was not masked"
    last_mask = max(i for i, line in enumerate(run.lines) if line.startswith(MASK))
    before = [line for line in run.lines[:last_mask] if not line.startswith(MASK)]
    assert before == [], f"printed before the values were masked: {before}"
    for line in run.lines[last_mask + 1 :]:
        assert not [f for f in forms if f in line or f in unescape(line)], line[:40]


def assert_no_value_anywhere(run: Run, values: list[str]) -> None:
    """A failed step: no form of any value in stdout (masks aside), stderr or any file."""
    forms = [f for v in values for f in encoded_forms(v) if len(f) >= 6]
    assert forms, "the positive control: the double minted values to look for"
    texts = {"stdout": "\n".join(line for line in run.lines if not line.startswith(MASK))}
    texts |= {"stderr": run.stderr, **run.files}
    for where, text in texts.items():
        for form in forms:
            assert form not in text, f"a value appears in {where}"
            assert form not in unescape(text), f"a value appears in {where}, escaped"


def test_broker_mode_exports_the_unsealed_keys_and_the_job_holds_no_app_key_or_connection(
    github: GitHub, broker: BrokerDouble
) -> None:
    run, seen = run_seen(github, {"keys": KEYS, "environment": "ci-pr-{pr}"})
    assert run.returncode == 0, [*run.lines, run.stderr]
    assert broker.problems == []
    # The env the action saw: no App key, no token input, no connection URL.
    assert not [name for name in seen if name in LOCAL_ONLY or "CONNECTION" in name.upper()]
    assert not [name for name, value in seen.items() if "PRIVATE KEY" in value]
    assert not [name for name, value in seen.items() if "://" in value and "@" in value]
    ((call,),) = [[c for c in broker.calls if c.path == "/v1/keys"]]
    # The spec goes as written; the placeholder is the service's to fill from the token.
    assert call.body.keys == KEYS.strip()
    assert call.body.destination.kind == "environment"
    assert call.body.destination.environment == "ci-pr-{pr}"
    assert broker.environments[call.request_id] == f"ci-pr-{PR}"
    minted = {m.name: m for m in broker.minted[call.request_id]}
    db, token = minted["DB"], minted["API_TOKEN"]
    assert_masked_before_anything_else(run, secret_values(broker))
    expected = {"API_TOKEN": token.value, "DB": db.value}
    expected |= {f"DB_{part}": value for part, value in db.parts.items()}
    assert run.env == expected
    assert {k: v for k, v in run.outputs.items() if k != "keys-json"} == expected
    assert run.keys_json() == [
        {
            "name": name,
            "provider": minted[name].provider,
            "scope": "environment",
            "environment": f"ci-pr-{PR}",
            "lifetime": minted[name].lifetime,
            "expires_at": run.keys_json()[i]["expires_at"],
            "lease_id": minted[name].lease_id,
            "variables": [n for n in expected if n == name or n.startswith(f"{name}_")],
        }
        for i, name in enumerate(["API_TOKEN", "DB"])
    ]
    assert "`ci-pr-17`" in run.summary
    run.assert_nowhere(secret_values(broker))
    # Nothing of GitHub's API was called by the step: the service writes the secrets.
    assert github.calls() == []
    assert json.loads(run.state["broker"]) == {
        "version": 1,
        "request_id": call.request_id,
        "retire": "job",
    }


def test_the_scan_sub_action_finds_a_brokered_keys_secret_part_and_not_its_host(
    github: GitHub, broker: BrokerDouble, tmp_path: Path
) -> None:
    """Broker mode leaves the scan its list too: the values came from the service, the names
    and fingerprints are the step's."""
    main = github.step.run({"keys": KEYS, "environment": "ci-pr-{pr}"})
    assert main.returncode == 0, main.lines
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "db.env").write_text(f"DB_HOST={main.env['DB_HOST']}\n")
    scan = github.step.run({"path": str(folder)}, extra_env=main.job_env(), entry=SCAN)
    assert scan.returncode == 0, scan.lines
    (folder / "db.env").write_text(f"DB_HOST={main.env['DB_HOST']}\npw={main.env['DB_PASSWORD']}")
    scan = github.step.run({"path": str(folder)}, extra_env=main.job_env(), entry=SCAN)
    assert scan.returncode == 1
    (error,) = scan.annotations("error")
    assert f"{folder}/db.env, line 2: the value of DB_PASSWORD (raw)" in error[1]
    assert_no_value_anywhere(scan, secret_values(broker))


def test_the_post_step_asks_the_service_to_retire_the_job_keys(
    github: GitHub, broker: BrokerDouble
) -> None:
    main = github.step.run({"keys": KEYS, "environment": "ci-pr-{pr}"})
    assert main.returncode == 0, main.lines
    post = github.step.run({}, extra_env=github.step.post_env(main), post=True)
    assert post.returncode == 0
    assert post.annotations("warning") == []
    assert broker.problems == []
    ((request_id, _),) = broker.minted.items()
    assert [(r.request_id, r.scope) for r in broker.retired] == [(request_id, "job")]
    jtis = [c.identity.jti for c in broker.calls]
    assert len(set(jtis)) == len(jtis) == 2  # a fresh token for the post step's request
    assert "retires 1 `job` key(s)" in " ".join(post.lines)
    assert github.calls() == []  # no GitHub credentials, no GitHub calls: the service deletes


def test_a_retried_request_keeps_its_id_and_a_fresh_token(
    github: GitHub, broker: BrokerDouble
) -> None:
    broker.answer, broker.unavailable_times = "unavailable", 2
    run = github.step.run({"keys": KEYS})
    assert run.returncode == 0, run.lines
    keys_calls = [c for c in broker.calls if c.path == "/v1/keys"]
    assert len(keys_calls) == 3
    assert len({c.request_id for c in keys_calls}) == 1  # one step attempt, one id
    assert len({c.identity.jti for c in keys_calls}) == 3
    assert len(broker.minted) == 1
    assert broker.problems == []
    assert {k["scope"] for k in run.keys_json()} == {"job"}


def test_a_new_step_attempt_sends_a_new_request_id(github: GitHub, broker: BrokerDouble) -> None:
    first = github.step.run({"keys": KEYS})
    second = github.step.run({"keys": KEYS})
    assert first.returncode == second.returncode == 0
    assert len(broker.minted) == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("refused", "key DB: policy_denied: rule 'main-only' does not allow ref refs/heads/topic"),
        ("other_key", "key DB: its value was not sealed to this step's key"),
        ("not_unsealed", "key DB: its sealed value is not a key's value and parts"),
        ("missing", "key DB: the service's answer does not hold this key"),
        ("extra", "key UNASKED: the service answered a key the `keys` input does not ask for"),
        ("malformed", "the runkeys service's answer to /v1/keys is not a list of sealed keys"),
    ],
)
def test_a_bad_answer_fails_naming_the_key_and_prints_no_value(
    github: GitHub, broker: BrokerDouble, answer: str, reason: str
) -> None:
    broker.answer, broker.refuse_key = answer, "DB"  # type: ignore[assignment]
    run = github.step.run({"keys": KEYS, "environment": "ci-pr-{pr}"})
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert reason in message, message
    assert run.env == {}
    assert run.outputs == {}
    assert broker.problems == []
    (request_id,) = [c.request_id for c in broker.calls if c.path == "/v1/keys"]
    assert json.loads(run.state["broker"])["retire"] == "none"
    if answer == "refused":
        assert broker.retired == []  # a refusal minted nothing
        assert broker.minted == {}
        return
    # The service had minted: the step asked it to retire every key of the request at once.
    assert [(r.request_id, r.scope) for r in broker.retired] == [(request_id, "all")]
    assert_no_value_anywhere(run, broker.values())


def test_an_unreachable_service_leaves_the_post_step_to_retire_everything(
    github: GitHub, broker: BrokerDouble
) -> None:
    broker.answer, broker.unavailable_times = "unavailable", 99
    run = github.step.run({"keys": KEYS})
    assert run.returncode == 1
    assert "503" in run.annotations("error")[0][1]
    # The service may have minted: the post step asks it to retire all of the request.
    assert json.loads(run.state["broker"])["retire"] == "all"


def test_an_answer_lost_after_the_service_minted_is_retired_by_the_post_step(
    github: GitHub, broker: BrokerDouble
) -> None:
    broker.answer = "lost"
    main = github.step.run({"keys": KEYS})
    assert main.returncode == 1
    assert "502" in main.annotations("error")[0][1]
    ((request_id, minted),) = broker.minted.items()  # minted once over the four attempts
    assert len([c for c in broker.calls if c.path == "/v1/keys"]) == 4
    assert_no_value_anywhere(main, broker.values())
    post = github.step.run({}, extra_env=github.step.post_env(main), post=True)
    assert post.returncode == 0
    assert [(r.request_id, r.scope) for r in broker.retired] == [(request_id, "all")]
    assert f"retires {len(minted)} key(s) of this step" in " ".join(post.lines)
    assert broker.problems == []


def test_broker_mode_with_a_connection_left_in_the_env_is_refused_naming_it(
    github: GitHub, broker: BrokerDouble
) -> None:
    run = github.step.run(
        {"keys": KEYS, "mode": "broker"},
        extra_env={"RUNKEYS_CONNECTION_CI_DB": "postgresql://admin:s3cret-pass@db/app"},
    )
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert "remove RUNKEYS_CONNECTION_CI_DB from the step" in message
    assert broker.paths == []


def test_auto_mode_with_connections_and_an_environment_says_what_to_remove(
    github: GitHub, broker: BrokerDouble
) -> None:
    run = github.step.run(
        {"keys": KEYS, "environment": "ci-pr-{pr}"},
        extra_env={"RUNKEYS_CONNECTION_CI_DB": "postgresql://admin:s3cret-pass@db/app"},
    )
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert "for broker mode (the runkeys service mints and writes), remove " in message
    assert "RUNKEYS_CONNECTION_CI_DB" in message
    assert broker.paths == []


def test_app_credentials_keep_local_mode_even_with_a_service_url(
    github: GitHub, broker: BrokerDouble
) -> None:
    """The documented precedence: a local credential picks local mode, which registers leases
    (`/v1/leases`) and never asks for keys."""
    keys = "API_TOKEN: {provider: random, ttl: 10m, lifetime: run}"
    github.step.run(github.app_inputs(keys=keys))
    assert "/v1/keys" not in broker.paths
    assert broker.paths[:1] == ["/v1/leases"]


def test_default_ttl_is_refused_in_broker_mode(github: GitHub, broker: BrokerDouble) -> None:
    run = github.step.run({"keys": KEYS, "default-ttl": "2h"})
    assert run.returncode == 1
    assert "write `ttl:` on the keys" in run.annotations("error")[0][1]
    assert broker.paths == []


def test_the_spec_is_checked_locally_before_the_service_is_asked(
    github: GitHub, broker: BrokerDouble
) -> None:
    bad = "DB: {provider: postgres, grant: [SELECT], ttl: 99h}"
    with pytest.raises(SpecError, match=r"keys\.DB"):  # the oracle: the parser alone refuses it
        parse_keys(bad)
    run = github.step.run({"keys": bad})
    assert run.returncode == 1
    assert "keys.DB" in run.annotations("error")[0][1]
    assert broker.paths == []


def test_the_double_is_strict_about_audience_body_and_replay(
    github: GitHub, broker: BrokerDouble
) -> None:
    """The positive control of the tests above: the double refuses what the real endpoint
    would, so their clean exchanges mean something."""
    url = github.step.base_env["INPUT_SERVICE-URL"]
    del github.step.base_env["INPUT_AUDIENCE"]  # the audience defaults to the service URL
    run = github.step.run({"keys": KEYS})
    assert run.returncode == 1
    assert "answered 401" in run.annotations("error")[0][1]
    assert broker.problems == ["token refused: The token is for another audience"]
    claims = github.sandbox.run_claims(github.repo, RUN_ID)
    token = github.sandbox.oidc_token(claims, AUDIENCE)
    body = {
        "request_id": "r" * 20,
        "keys": KEYS,
        "destination": {"kind": "job"},
        "public_key": "A" * 43 + "=",
    }
    headers = {"Authorization": f"Bearer {token}"}
    extra = requests.post(f"{url}/v1/keys", json={**body, "pr": 1}, headers=headers, timeout=10)
    assert extra.status_code == 400
    replayed = requests.post(f"{url}/v1/keys", json=body, headers=headers, timeout=10)
    assert replayed.status_code == 401  # the token was used by the request before
    assert broker.minted == {}
