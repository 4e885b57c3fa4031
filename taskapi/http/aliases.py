"""The one alias rule: every `/task/{id}…` route also answers at `/tasks/{id}…`, and
`/users/{id}` also at the seed's `/user/{id}`, at the root and under `/api/v1` alike.

An alias is the same view under the endpoint `<endpoint>_alias`: the same roles, hooks,
cache fast path and metrics label; the OpenAPI spec hides it (`http/openapi.py`) and
documents the rule once, in its description.
"""

from __future__ import annotations

import re

from quart import Quart

ALIAS_SUFFIX = "_alias"
_IMPLICIT = frozenset({"HEAD", "OPTIONS"})
# (pattern on a rule, its alias): the prefix (`/api/v1` or nothing) is kept.
_RULES = (
    (re.compile(r"^(?P<prefix>.*)/task/(?P<rest><int:task_id>.*)$"), r"\g<prefix>/tasks/\g<rest>"),
    (re.compile(r"^(?P<prefix>.*)/users/(?P<rest><int:user_id>)$"), r"\g<prefix>/user/\g<rest>"),
)
DESCRIPTION = ("Aliases: every `/task/{id}…` operation also answers at `/tasks/{id}…`, and "
               "`/users/{id}` at `/user/{id}`; each is documented once, at its first path.")


def alias_of(path: str) -> str | None:
    for pattern, replacement in _RULES:
        if pattern.match(path):
            return pattern.sub(replacement, path)
    return None


def add_aliases(app: Quart) -> None:
    """Add the alias of every rule that has one (call after the blueprints are registered)."""
    for rule in list(app.url_map.iter_rules()):
        alias = alias_of(rule.rule)
        if alias is None or rule.endpoint.endswith(ALIAS_SUFFIX):
            continue
        app.add_url_rule(alias, endpoint=rule.endpoint + ALIAS_SUFFIX,
                         view_func=app.view_functions[rule.endpoint],
                         methods=sorted((rule.methods or set()) - _IMPLICIT),
                         provide_automatic_options=True)
