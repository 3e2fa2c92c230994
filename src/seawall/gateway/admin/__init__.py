"""The admin API (FastAPI, under `/admin/`; schema at `/openapi.json`).

Who may call what (admin holds every role; `seawall.gateway.admin.access` says how it is
checked, and the app refuses to build with a route that does not say):

| route                                         | roles            | needs       |
|-----------------------------------------------|------------------|-------------|
| GET /admin/circuits, GET /admin/circuits/m/v  | viewer, deployer | model scope |
| PUT /admin/circuits/{model}/{version}         | deployer         | model scope |
| GET, POST /admin/keys; DELETE /admin/keys/n;  | admin            | every model,|
| POST /admin/keys/{name}/rotate                |                  | database    |
| GET /admin/audit/records, /head, /verify      | admin            | every model,|
|                                               |                  | database    |
| GET /admin/models, /admin/models/{model},     | viewer, deployer,| model scope,|
| .../versions, .../versions/{v}, .../approvals,| approver,        | database    |
| .../history, .../lineage, .../deployments     | data-steward     |             |
| POST /admin/models, .../versions, .../stage;  | deployer         | model scope,|
| PUT, DELETE .../aliases/{alias};              |                  | database    |
| PUT /admin/artifacts/{sha256}                 |                  |             |
| POST .../approvals, .../rejections            | approver         | model scope,|
|                                               |                  | database    |
| PATCH /admin/models/{model}                   | admin            | model scope,|
|                                               |                  | database    |
| GET /admin/rollouts, /admin/rollouts/{model}, | viewer, deployer,| model scope,|
| .../history                                   | approver,        | rollouts    |
|                                               | data-steward     |             |
| POST /admin/rollouts (a plan calling Python   | deployer         | model scope,|
| functions: admin), .../{model}/pause, resume, |                  | rollouts    |
| abort, promote, metrics                       |                  |             |

The audit log is admin only: it names every model, key and actor. The model listing shows only
the models a key may act on. Routes that need the
database answer 503 when none is configured (`database_url` or `auth.database_keys`); the
rollout routes also when the gateway runs no rollout controller.
Errors have the same `{"error": "<field>: <reason>"}` shape as the inference routes.
"""

from seawall.gateway.admin.access import (
    ROLES,
    Control,
    Requires,
    Role,
    check_model_scope,
    requires,
    route_roles,
)
from seawall.gateway.admin.app import admin_app
from seawall.gateway.admin.errors import ErrorBody, responses

__all__ = [
    "ROLES",
    "Control",
    "ErrorBody",
    "Requires",
    "Role",
    "admin_app",
    "check_model_scope",
    "requires",
    "responses",
    "route_roles",
]
