"""DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), version 0
(KIP-554): SCRAM users kept salted in the metadata store. The client salts and hashes the
password itself; the broker stores the derived keys, never the password. Errors per user as
Kafka's ControllerApis / ScramControlManager give them. Describing needs DESCRIBE on the
cluster, altering ALTER (else CLUSTER_AUTHORIZATION_FAILED, for every user named)."""

from __future__ import annotations

from collections import Counter

from strom.handlers.auth import cluster_allowed
from strom.handlers.context import BrokerContext
from strom.handlers.registry import Request, handles
from strom.metadata.configs import ConfigError
from strom.metadata.image import ScramCredential
from strom.protocol.api import ApiKey
from strom.protocol.errors import ErrorCode
from strom.protocol.responses import (
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)
from strom.security.acl import Operation
from strom.security.scram import (
    CODE_OF,
    MAX_ITERATIONS,
    MECHANISM_CODES,
    MIN_ITERATIONS,
    credential_from_salted_password,
)

CLUSTER_REFUSED = "Cluster authorization failed."  # Kafka's message for the error


@handles(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0)
async def describe_user_scram_credentials(ctx: BrokerContext, request: Request) -> DescribeUserScramCredentialsResponse:
    if not cluster_allowed(ctx, request, Operation.DESCRIBE):
        error, message = ErrorCode.CLUSTER_AUTHORIZATION_FAILED, CLUSTER_REFUSED
        return {"throttle_time": 0, "error_code": error, "error_message": message,
                "results": [{"user": u.name, "error_code": error, "error_message": message, "credential_infos": []}
                            for u in request.body.users or ()]}
    scram = ctx.image.scram
    asked = [u.name for u in request.body.users or ()] or None  # null or empty: every user
    results: list[DescribeUserScramCredentialsResult] = []
    counts = Counter(asked or ())
    for user in sorted(scram) if asked is None else list(dict.fromkeys(asked)):
        result: DescribeUserScramCredentialsResult = {"user": user, "error_code": ErrorCode.NONE, "error_message": None, "credential_infos": []}
        if counts[user] > 1:
            result.update({"error_code": ErrorCode.DUPLICATE_RESOURCE, "error_message": f"Cannot describe SCRAM credentials for the same user twice in a single request: {user}"})
        elif user not in scram:
            result.update({"error_code": ErrorCode.RESOURCE_NOT_FOUND, "error_message": f"Attempt to describe a user credential that does not exist: {user}"})
        else:
            result["credential_infos"] = [{"mechanism": CODE_OF[c.mechanism], "iterations": c.iterations}
                                          for _, c in sorted(scram[user].items())]
        results.append(result)
    return {"throttle_time": 0, "error_code": ErrorCode.NONE, "error_message": None, "results": results}


def _mechanism(name: str, code: int) -> str | tuple[int, str]:
    """A deletion's or upsertion's SCRAM mechanism, or why it is refused."""
    if not name:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
    mechanism = MECHANISM_CODES.get(code)
    return (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism") if mechanism is None else mechanism


@handles(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, 0)
async def alter_user_scram_credentials(ctx: BrokerContext, request: Request) -> AlterUserScramCredentialsResponse:
    body = request.body
    if not cluster_allowed(ctx, request, Operation.ALTER):
        names = sorted({d.name for d in body.deletions} | {u.name for u in body.upsertions})
        return {"throttle_time": 0, "results": [
            {"user": n, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "error_message": CLUSTER_REFUSED} for n in names]}
    errors: dict[str, tuple[int, str]] = {}
    touched = Counter((d.name, d.mechanism) for d in body.deletions)
    touched.update((u.name, u.mechanism) for u in body.upsertions)
    users = list(dict.fromkeys([d.name for d in body.deletions] + [u.name for u in body.upsertions]))
    for (name, _), n in touched.items():
        if n > 1:
            errors.setdefault(name, (ErrorCode.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"))
    deletions: list[tuple[str, str]] = []
    upserts: list[tuple[str, ScramCredential]] = []
    scram = ctx.image.scram
    for d in body.deletions:
        mechanism = _mechanism(d.name, d.mechanism)
        if isinstance(mechanism, tuple):
            errors.setdefault(d.name, mechanism)
        elif mechanism not in scram.get(d.name, {}):
            errors.setdefault(d.name, (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"))
        else:
            deletions.append((d.name, mechanism))
    for u in body.upsertions:
        mechanism = _mechanism(u.name, u.mechanism)
        if isinstance(mechanism, tuple):
            errors.setdefault(u.name, mechanism)
        elif u.iterations < MIN_ITERATIONS:
            errors.setdefault(u.name, (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"))
        elif u.iterations > MAX_ITERATIONS:
            errors.setdefault(u.name, (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"))
        elif not u.salt or not u.salted_password:
            errors.setdefault(u.name, (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Salt and salted password must not be empty"))
        else:
            upserts.append((u.name, credential_from_salted_password(mechanism, bytes(u.salt), bytes(u.salted_password), u.iterations)))
    # A user with any error changes nothing (Kafka validates per user).
    deletions = [d for d in deletions if d[0] not in errors]
    upserts = [u for u in upserts if u[0] not in errors]
    if deletions or upserts:
        try:
            await ctx.metadata.alter_scram_credentials(upserts, deletions)
        except ConfigError as exc:
            for name in {d[0] for d in deletions} | {u[0] for u in upserts}:
                errors[name] = (exc.error_code, exc.message)
    results: list[AlterUserScramCredentialsResult] = [
        {"user": name, "error_code": errors.get(name, (ErrorCode.NONE, None))[0],
         "error_message": errors.get(name, (ErrorCode.NONE, None))[1]} for name in users]
    return {"throttle_time": 0, "results": results}
