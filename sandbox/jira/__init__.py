"""A local Jira Cloud for tests and ``grantflow dev``: a real HTTP server answering the calls grantflow makes
through the ``jira`` client, the way Jira Cloud answers them (see ``../shared/notes/integrations.md`` and
``../shared/specs/jira-platform-v3.json``), and sending signed webhooks when issues change.

    jira = JiraStandIn(users={"grantflow@corp.example": "api-token"}, webhook_secret="s3cret",
                       webhook_url="http://127.0.0.1:8000/hooks/jira")
    jira.add_project("ACC")                                  # the default approval workflow
    bob = jira.add_user("bob@corp.example", "Bob", email_visible=False)
    url = jira.start()                                       # http://127.0.0.1:PORT
    ...
    jira.transition_as("ACC-1", "Approve", bob)              # a person clicking "Approve" in Jira's UI
    jira.wait_idle()                                         # every webhook delivered (or given up)
    jira.stop()

Behaviour reproduced (Jira Cloud, REST v2 and v3):

- Paths under ``/rest/api/2/``, ``/rest/api/latest/`` and ``/rest/api/3/``. v3 carries descriptions and
  comment bodies as Atlassian Document Format (ADF) and refuses plain strings there; v2/latest take and return
  strings (both are stored, so an issue written through one reads back through the other).
- ``GET /serverInfo`` answers as Cloud (``deploymentType: "Cloud"``) without credentials, like Cloud. Every
  other route needs HTTP basic auth ``email:api-token`` of a user given in ``users``; wrong or missing
  credentials get **401**. Every object carries a ``self`` link (the ``jira`` client raises ``KeyError:
  'self'`` without it).
- ``POST /issue`` → **201** ``{id, key, self}``; bad fields → **400** ``{"errorMessages": [], "errors":
  {field: message}}`` with Jira's messages (missing/unknown project, issue type or summary, a summary with a
  newline or over 255 characters, labels with spaces, a description of the wrong format for the API version,
  an unknown assignee accountId, an unknown or unsettable field: ``Field 'x' cannot be set. It is not on the
  appropriate screen, or unknown.``). Every call creates an issue: Jira has no idempotency key.
- ``GET /issue/{key|id}`` (``fields``, ``expand=changelog,transitions``), ``PUT /issue/{key}`` → **204**
  (summary, description, labels, assignee ``{accountId}``, duedate, configured custom fields; ``update`` with
  ``labels``/``comment`` operations), unknown issue → **404**.
- ``GET /issue/{key}/transitions`` lists the transitions available from the current status (by the project's
  workflow); ``POST`` with ``{"transition": {"id"}}`` (plus optional ``fields`` and ``update.comment``) →
  **204**, a transition not available → **400**. Entering a ``done``-category status sets the resolution
  (``Done``), leaving it clears it, as the default Jira workflows do.
- ``POST``/``GET /issue/{key}/comment`` (201 Comment / PageOfComments).
- ``GET /user/search?query=`` returns active users whose display name (or one of its words) or visible email
  starts with the query; a user with email privacy on (``email_visible=False``) has no ``emailAddress`` in any
  answer but is still found by the exact email, as on Cloud. ``GET /user?accountId=``, ``GET /myself``.
- ``GET``/``POST /search`` (startAt paging; Atlassian has since retired these on Cloud:
  ``legacy_search_gone=True`` answers **410** as Cloud does now) and ``GET``/``POST /search/jql``
  (``nextPageToken`` paging, ``isLast``; ``fields`` defaults to none; an unbounded query is refused with
  **400** as on Cloud). The JQL understood is a subset: clauses on ``project``, ``labels``,
  ``key``/``issuekey``, ``status``, ``statusCategory``, ``issuetype``/``type``, ``assignee``, ``reporter``
  with ``=``, ``!=``, ``in (…)``, ``not in (…)``, ``is [not] empty``, joined by ``AND``, then ``ORDER BY
  created|updated|key [ASC|DESC]``. ``labels != x`` skips issues without labels, as Jira does. ``OR`` and
  parentheses are refused with a 400 naming the stand-in.
- ``GET /field`` (the client loads it before searching), ``GET /project/{key}``.
- Not reproduced: Cloud's search index is eventually consistent (a new issue can be missing from search for a
  moment); here it is searchable at once. Pages hold at most 100 issues. No issue properties, attachments,
  links or ``comment_created`` events; state is in memory only.

Webhooks (``webhooks.py``): every issue change is sent, signed, to ``webhook_url`` from a background thread,
redelivered as Atlassian's published policy says. Test hooks (``server.py``): ``fail_next``/``drop_next``
answer the next matching calls with a failure or close the connection, before or after the write.

Layout, one concern per module: ``server`` (:class:`JiraStandIn`: constructor, route table, auth, call log,
faults) built from ``issues``, ``transitions`` (and comments), ``directory`` (server info, users, fields,
projects), ``search`` and ``webhooks``, on ``fields`` (validation and writes), ``render`` (answer shapes) and
``state`` (records, ids, the state file); ``model``, ``workflow``, ``jql``, ``adf`` and ``api`` hold the plain
pieces they share. This package imports nothing of grantflow.
"""

from sandbox.jira.adf import adf_to_text, is_adf, text_to_adf
from sandbox.jira.jql import parse_jql
from sandbox.jira.model import JiraCall
from sandbox.jira.server import JiraStandIn
from sandbox.jira.webhooks import (
    ATLASSIAN_RETRY_STATUSES,
    DEFAULT_WEBHOOK_RETRY_DELAYS,
    WebhookDelivery,
    WebhookEvent,
)
from sandbox.jira.workflow import CATEGORIES, DEFAULT_WORKFLOW, JiraStatus, JiraTransition, JiraWorkflow

__all__ = [
    "ATLASSIAN_RETRY_STATUSES",
    "CATEGORIES",
    "DEFAULT_WEBHOOK_RETRY_DELAYS",
    "DEFAULT_WORKFLOW",
    "JiraCall",
    "JiraStandIn",
    "JiraStatus",
    "JiraTransition",
    "JiraWorkflow",
    "WebhookDelivery",
    "WebhookEvent",
    "adf_to_text",
    "is_adf",
    "parse_jql",
    "text_to_adf",
]
