"""Conformance of the emulator with Google's Python client libraries over REST.

Run by tests/python_clients.rs, which starts the emulator, gives project `p` a number and sets EMULATOR_URL and
EMULATOR_PROJECT_NUMBER.
"""

import json
import os
import time
import urllib.request

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2, secretmanager_v1

URL = os.environ.get("EMULATOR_URL", "")
PARENT = "projects/p/locations/us-central1"
# Secret Manager returns names with the project number, even when called with the project id.
P_NUMBER = os.environ.get("EMULATOR_PROJECT_NUMBER", "")


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def status_of(error) -> str:
    """The `error.status` Google sent (REST errors map to exception classes by HTTP code only)."""
    return error.response.json()["error"]["status"]


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def options() -> ClientOptions:
    assert URL, "EMULATOR_URL must point at a running gcp-emulator"
    return ClientOptions(api_endpoint=URL)


@pytest.fixture
def sm():
    return secretmanager_v1.SecretManagerServiceClient(
        transport="rest", client_options=options(), credentials=AnonymousCredentials()
    )


@pytest.fixture
def services():
    return run_v2.ServicesClient(transport="rest", client_options=options(), credentials=AnonymousCredentials())


def seed_service_account(email: str) -> None:
    """Makes `email` exist through the emulator's admin API: only seeded or created accounts exist, as in Google."""
    request = urllib.request.Request(
        f"{options().api_endpoint}/_emulator/service-accounts",
        data=json.dumps({"email": email}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 200


def create_secret(sm, sid, labels=None):
    return sm.create_secret(
        request={
            "parent": "projects/p",
            "secret_id": sid,
            "secret": {"replication": {"automatic": {}}, "labels": labels or {}},
        }
    )


def test_crc32c_helper_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283


def test_the_admin_api_reports_the_project_number():
    assert P_NUMBER, "EMULATOR_PROJECT_NUMBER must be the number of project p"
    with urllib.request.urlopen(f"{options().api_endpoint}/_emulator/projects/p") as resp:
        assert json.load(resp) == {"projectId": "p", "projectNumber": P_NUMBER}


def test_secret_and_version_lifecycle(sm):
    sid = unique("py")
    secret = create_secret(sm, sid, {"env": "prod"})
    assert secret.name == f"projects/{P_NUMBER}/secrets/{sid}"
    # Either form of the project reaches the same secret.
    assert sm.get_secret(name=f"projects/p/secrets/{sid}") == secret
    assert sm.get_secret(name=f"projects/{P_NUMBER}/secrets/{sid}") == secret
    assert secret.labels["env"] == "prod"
    assert secret.replication.automatic is not None
    with pytest.raises(exceptions.Conflict) as err:
        create_secret(sm, sid)
    assert "already exists" in err.value.message
    assert status_of(err.value) == "ALREADY_EXISTS"

    v1 = sm.add_secret_version(
        request={"parent": secret.name, "payload": {"data": b"one", "data_crc32c": crc32c(b"one")}}
    )
    assert v1.name == f"{secret.name}/versions/1"
    assert v1.state == secretmanager_v1.SecretVersion.State.ENABLED
    assert v1.client_specified_payload_checksum
    v2 = sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"two"}})
    assert v2.name == f"{secret.name}/versions/2"
    with pytest.raises(exceptions.BadRequest):
        sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"x", "data_crc32c": 1}})
    with pytest.raises(exceptions.BadRequest):
        sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"x" * 65537}})

    latest = sm.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.name == v2.name
    assert latest.payload.data == b"two"
    assert latest.payload.data_crc32c == crc32c(b"two")
    assert latest.name == f"projects/{P_NUMBER}/secrets/{sid}/versions/2"
    by_id = sm.access_secret_version(name=f"projects/p/secrets/{sid}/versions/2")
    assert by_id.name == latest.name
    assert by_id.payload.data == b"two"

    disabled = sm.disable_secret_version(request={"name": v1.name, "etag": v1.etag})
    assert disabled.state == secretmanager_v1.SecretVersion.State.DISABLED
    with pytest.raises(exceptions.BadRequest) as err:
        sm.access_secret_version(name=v1.name)
    assert "DISABLED" in err.value.message
    assert status_of(err.value) == "FAILED_PRECONDITION"
    with pytest.raises(exceptions.BadRequest) as err:
        sm.enable_secret_version(request={"name": v1.name, "etag": v1.etag})
    assert status_of(err.value) == "FAILED_PRECONDITION"
    assert sm.enable_secret_version(name=v1.name).state == secretmanager_v1.SecretVersion.State.ENABLED
    destroyed = sm.destroy_secret_version(name=v1.name)
    assert destroyed.state == secretmanager_v1.SecretVersion.State.DESTROYED
    assert destroyed.destroy_time is not None

    enabled = list(sm.list_secret_versions(request={"parent": secret.name, "filter": "state:ENABLED"}))
    assert [v.name for v in enabled] == [v2.name]
    everything = list(sm.list_secret_versions(request={"parent": secret.name, "page_size": 1}))
    assert [v.name for v in everything] == [v2.name, v1.name]

    patched = sm.update_secret(
        request={"secret": {"name": secret.name, "labels": {"env": "dev"}}, "update_mask": {"paths": ["labels"]}}
    )
    assert patched.labels["env"] == "dev"
    with pytest.raises(exceptions.BadRequest) as err:
        sm.update_secret(
            request={
                "secret": {"name": secret.name, "labels": {"env": "x"}, "etag": secret.etag},
                "update_mask": {"paths": ["labels"]},
            }
        )
    assert status_of(err.value) == "FAILED_PRECONDITION"

    names = [s.name for s in sm.list_secrets(request={"parent": "projects/p", "filter": "labels.env=dev"})]
    assert secret.name in names
    by_number = [
        s.name for s in sm.list_secrets(request={"parent": f"projects/{P_NUMBER}", "filter": "labels.env=dev"})
    ]
    assert by_number == names
    sm.delete_secret(name=secret.name)
    with pytest.raises(exceptions.NotFound) as err:
        sm.get_secret(name=f"projects/p/secrets/{sid}")
    assert err.value.response.json()["error"]["message"] == f"Secret [projects/{P_NUMBER}/secrets/{sid}] not found."


def test_secret_iam_etag_conflict(sm):
    seed_service_account("run@p.iam.gserviceaccount.com")
    secret = create_secret(sm, unique("iam"))
    policy = sm.get_iam_policy(request={"resource": secret.name, "options": {"requested_policy_version": 3}})
    assert list(policy.bindings) == []
    policy.bindings.add(
        role="roles/secretmanager.secretAccessor", members=["serviceAccount:run@p.iam.gserviceaccount.com"]
    )
    policy.version = 3
    updated = sm.set_iam_policy(request={"resource": secret.name, "policy": policy})
    assert updated.etag != policy.etag
    assert list(updated.bindings[0].members) == ["serviceAccount:run@p.iam.gserviceaccount.com"]
    with pytest.raises(exceptions.Conflict) as err:
        sm.set_iam_policy(request={"resource": secret.name, "policy": policy})
    assert "concurrent policy changes" in err.value.message
    assert status_of(err.value) == "ABORTED"
    again = sm.get_iam_policy(request={"resource": secret.name, "options": {"requested_policy_version": 3}})
    assert again.etag == updated.etag
    assert secret.name.startswith(f"projects/{P_NUMBER}/secrets/")
    by_id = secret.name.replace(f"projects/{P_NUMBER}/", "projects/p/", 1)
    assert sm.get_iam_policy(request={"resource": by_id, "options": {"requested_policy_version": 3}}) == again


def test_run_service_lifecycle_through_operations(services):
    sid = unique("svc")
    op = services.create_service(
        request={
            "parent": PARENT,
            "service_id": sid,
            "service": {
                "ingress": run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY,
                "template": {"containers": [{"image": "img:1", "env": [{"name": "A", "value": "1"}]}]},
            },
        }
    )
    svc = op.result(timeout=30)
    assert svc.name == f"{PARENT}/services/{sid}"
    assert svc.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
    assert svc.generation == 1
    assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert svc.latest_ready_revision == svc.latest_created_revision
    assert svc.latest_ready_revision.startswith(f"{svc.name}/revisions/{sid}-00001-")
    # Without a named account, the revision runs as the project's default compute account, which always exists.
    assert svc.template.service_account == f"{P_NUMBER}-compute@developer.gserviceaccount.com"

    got = services.get_service(name=svc.name)
    got.template.containers[0].image = "img:2"
    updated = services.update_service(request={"service": got}).result(timeout=30)
    assert updated.generation == 2
    assert updated.latest_ready_revision != svc.latest_ready_revision

    revisions = run_v2.RevisionsClient(transport="rest", client_options=options(), credentials=AnonymousCredentials())
    listed = list(revisions.list_revisions(parent=svc.name))
    assert [r.name for r in listed] == [updated.latest_ready_revision, svc.latest_ready_revision]

    policy = services.get_iam_policy(request={"resource": svc.name})
    policy.bindings.add(role="roles/run.invoker", members=["allUsers"])
    set_policy = services.set_iam_policy(request={"resource": svc.name, "policy": policy})
    assert list(set_policy.bindings[0].members) == ["allUsers"]

    with pytest.raises(exceptions.Conflict):
        services.create_service(request={"parent": PARENT, "service_id": sid, "service": {"template": got.template}})

    deleted = services.delete_service(name=svc.name).result(timeout=30)
    assert deleted.name == svc.name
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=svc.name)


def test_run_revision_failure_surfaces_through_the_operation(services):
    sid = unique("bad")
    op = services.create_service(
        request={
            "parent": PARENT,
            "service_id": sid,
            "service": {
                "template": {
                    "containers": [
                        {
                            "image": "img:1",
                            "env": [
                                {"name": "DB", "value_source": {"secret_key_ref": {"secret": "absent", "version": "1"}}}
                            ],
                        }
                    ]
                }
            },
        }
    )
    with pytest.raises(exceptions.GoogleAPICallError) as err:
        op.result(timeout=30)
    assert f"Secret projects/{P_NUMBER}/secrets/absent/versions/1 was not found" in str(err.value)
    svc = services.get_service(name=f"{PARENT}/services/{sid}")
    assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED


def test_accounts_that_were_never_seeded_or_created_do_not_exist(sm, services):
    ghost = f"ghost-{time.time_ns() % 10**9}@p.iam.gserviceaccount.com"
    secret = create_secret(sm, unique("ghost"))
    policy = sm.get_iam_policy(request={"resource": secret.name})
    policy.bindings.add(role="roles/secretmanager.secretAccessor", members=[f"serviceAccount:{ghost}"])
    with pytest.raises(exceptions.BadRequest) as err:
        sm.set_iam_policy(request={"resource": secret.name, "policy": policy})
    assert err.value.response.json()["error"]["message"] == f"Service account {ghost} does not exist."
    assert status_of(err.value) == "INVALID_ARGUMENT"

    sid = unique("ghost")
    with pytest.raises(exceptions.BadRequest) as err:
        services.create_service(
            request={
                "parent": PARENT,
                "service_id": sid,
                "service": {"template": {"service_account": ghost, "containers": [{"image": "img:1"}]}},
            }
        )
    assert err.value.response.json()["error"]["message"] == f"Service account {ghost} does not exist."
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=f"{PARENT}/services/{sid}")

    # Seeded, the same account may be bound and run revisions.
    seed_service_account(ghost)
    assert list(sm.set_iam_policy(request={"resource": secret.name, "policy": policy}).bindings[0].members) == [
        f"serviceAccount:{ghost}"
    ]
    svc = services.create_service(
        request={
            "parent": PARENT,
            "service_id": sid,
            "service": {"template": {"service_account": ghost, "containers": [{"image": "img:1"}]}},
        }
    ).result(timeout=30)
    assert svc.template.service_account == ghost
    assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
