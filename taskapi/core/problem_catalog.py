"""Every problem `code` the API answers with: a title and a short text for people.

A problem's `type` is `{PUBLIC_URL or the request's base URL}/problems/<code>`, and
`GET /problems/<code>` answers a short page from this catalog (`http/blueprints/
problem_pages.py`). A code missing here would be a link to nowhere: `tests/test_first_hour.py`
finds every code in the source and checks it is listed (and the README lists them all).
(decision 034)
"""

from __future__ import annotations

from typing import NamedTuple


class ProblemType(NamedTuple):
    status: int
    title: str
    text: str


CATALOG: dict[str, ProblemType] = {
    "malformed_request": ProblemType(
        400, "Malformed request",
        "The body is not valid JSON, not UTF-8, or repeats a key within one object (which "
        "value counts would be up to each parser). Send a JSON document encoded as UTF-8, "
        "each key once."),
    "invalid_idempotency_key": ProblemType(
        400, "Invalid Idempotency-Key",
        "The `Idempotency-Key` header is empty or longer than 255 characters."),
    "invalid_token": ProblemType(
        401, "Invalid token",
        "The bearer token (or the email-confirmation token, as a 400) is not one this "
        "service issued, or it was already used or has expired. Log in again."),
    "invalid_ticket": ProblemType(
        401, "Invalid ticket",
        "The stream ticket is unknown, already used or expired (tickets are single use and "
        "short-lived): get a new one from `POST /events/ticket`."),
    "not_authenticated": ProblemType(
        401, "Not authenticated",
        "This route needs `Authorization: Bearer <access_token>` (from `POST /login`)."),
    "token_expired": ProblemType(
        401, "Token expired",
        "The access token has expired: get a new pair from `POST /token/refresh`."),
    "token_revoked": ProblemType(
        401, "Token revoked",
        "The session of this token ended (logout, password change, deletion). Log in again."),
    "token_reused": ProblemType(
        401, "Refresh token reused",
        "A refresh token that had already been rotated out was presented: the whole session "
        "was ended in case someone else holds a copy. Log in again."),
    "account_inactive": ProblemType(
        401, "Account inactive",
        "The account of this token was deleted or is no longer approved."),
    "account_pending": ProblemType(
        403, "Account awaiting approval",
        "The account exists but an admin has not approved it yet."),
    "forbidden": ProblemType(
        403, "Forbidden", "Your role may not do this."),
    "insufficient_scope": ProblemType(
        403, "Insufficient scope",
        "A personal access token with the `read` scope may only GET and HEAD; and no personal "
        "token may create tokens, change the password or email, or end sessions: log in."),
    "not_found": ProblemType(
        404, "Not found",
        "Nothing at this URL, or nothing you may see (someone else's task is a 404 too)."),
    "method_not_allowed": ProblemType(
        405, "Method not allowed", "This URL does not take this method: see the `Allow` header."),
    "request_timeout": ProblemType(
        408, "Request timeout",
        "The request body did not arrive within `BODY_TIMEOUT` seconds; the connection is "
        "closed."),
    "username_taken": ProblemType(
        409, "Username taken", "Another account has this username: pick another."),
    "not_pending": ProblemType(
        409, "Not pending", "Only an account awaiting approval can be rejected."),
    "email_unconfirmed": ProblemType(
        409, "Email not confirmed",
        "The account's email address is not confirmed yet, and this service requires it "
        "before approval."),
    "cannot_modify_self": ProblemType(
        409, "Cannot change your own account this way",
        "An admin cannot demote, unapprove or delete themselves (so one admin always "
        "remains)."),
    "too_many_tokens": ProblemType(
        409, "Too many tokens",
        "You have the most personal access tokens one account may hold: revoke one "
        "(`DELETE /me/tokens/{id}`) first."),
    "idempotency_key_in_use": ProblemType(
        409, "Idempotency-Key in use",
        "A request with this `Idempotency-Key` is still being processed: retry shortly to get "
        "its answer."),
    "write_conflict": ProblemType(
        409, "Write conflict",
        "Another write changed this resource at the same moment: read it again and retry."),
    "delivery_in_flight": ProblemType(
        409, "Delivery in flight",
        "A worker is sending this webhook delivery right now: `GET /webhooks/{id}/deliveries` "
        "shows its outcome within `WEBHOOK_TIMEOUT`; redeliver it then if needed."),
    "precondition_failed": ProblemType(
        412, "Precondition failed",
        "The `If-Match` ETag is not the resource's current one: someone changed it since you "
        "read it. GET it again (its new `ETag`), then retry; nothing was changed."),
    "payload_too_large": ProblemType(
        413, "Payload too large", "The body is larger than `MAX_BODY_BYTES`."),
    "too_many_keys": ProblemType(
        413, "Too many keys",
        "The JSON body has more keys than any request takes (100 in one object, 1,000 "
        "objects and keys in all)."),
    "idempotency_key_reused": ProblemType(
        422, "Idempotency-Key reused",
        "This `Idempotency-Key` was already used with another request body: use a new key "
        "for a new request."),
    "webhook_url_refused": ProblemType(
        422, "Webhook URL refused",
        "A webhook URL must be http or https, without credentials or a fragment, and its host "
        "must resolve to public addresses only (loopback, private, link-local and unique-local "
        "ones are refused unless the service sets `WEBHOOK_ALLOW_PRIVATE`). `detail` says "
        "which rule it broke."),
    "invalid_last_event_id": ProblemType(
        422, "Invalid Last-Event-ID",
        "`Last-Event-ID` (or `last_event_id`) must be an event id, a whole number."),
    "uri_too_long": ProblemType(
        414, "URI too long", "The query string is longer than 8 KiB."),
    "unsupported_media_type": ProblemType(
        415, "Unsupported media type",
        "The body is not of the type the route takes: JSON routes need "
        "`Content-Type: application/json` (curl's `-d` alone sends a form type). The "
        "problem's `expected_content_type` names it."),
    "validation_error": ProblemType(
        422, "Validation error",
        "The body or the query string has invalid values: `errors` lists the first 20 (each "
        "with `loc`, the field as you sent it, `msg` and `type`), `error_count` them all. "
        "Datetimes need an offset (`Z` or `+01:00`)."),
    "invalid_assignee": ProblemType(
        422, "Invalid assignee",
        "A task can be assigned only to an approved employee or manager; `errors` names the "
        "field sent (`user_id` or `assigned_user_id`)."),
    "repeated_parameter": ProblemType(
        422, "Repeated query parameter", "Each query parameter takes one value."),
    "invalid_cursor": ProblemType(
        422, "Invalid cursor",
        "The `cursor` is not one this API handed out for this list: follow the `Link` "
        "header's URL as it is."),
    "wrong_password": ProblemType(
        422, "Wrong password", "The `current_password` does not match."),
    "no_report_schedule": ProblemType(
        422, "No report schedule", "Employees get no scheduled reports."),
    "rate_limited": ProblemType(
        429, "Too many requests", "Over the rate limit: wait `Retry-After` seconds."),
    "too_many_streams": ProblemType(
        429, "Too many streams",
        "You hold as many open event streams as one user may (503: this server holds as many "
        "as it can): close one, or retry after `Retry-After` seconds."),
    "headers_too_large": ProblemType(
        431, "Request headers too large", "The request headers are larger than 16 KiB."),
    "precondition_required": ProblemType(
        428, "Precondition required",
        "This service requires `If-Match` on this write (`REQUIRE_IF_MATCH`): send the "
        "`ETag` of your last GET."),
    "internal_error": ProblemType(
        500, "Internal error",
        "Something went wrong on our side; the log has the details under this `request_id`."),
    "busy": ProblemType(
        503, "Busy", "Too many password checks at once: retry after `Retry-After` seconds."),
    "database_unavailable": ProblemType(
        503, "Database unavailable",
        "The database is busy or unreachable; nothing was changed. Retry after `Retry-After` "
        "seconds."),
    "dependency_down": ProblemType(
        503, "Not ready", "The database or Redis does not answer (`GET /readyz`)."),
    "streams_unavailable": ProblemType(
        503, "Streams unavailable",
        "This server is not serving event streams right now (starting or stopping): retry "
        "after `Retry-After` seconds."),
    "tickets_unavailable": ProblemType(
        503, "Tickets unavailable",
        "Stream tickets need Redis, which does not answer: retry later, or open the stream "
        "with an `Authorization` header."),
}
