"""grantflow's Slack adapter: post, find and update the messages of a request, map people between the
directory and Slack, and render Block Kit from ``templates/slack/``. No business decisions happen here;
activities call it and decide what to do with its errors.

Where each part lives:

- :mod:`~integrations.slack.client` — ``SlackChannel``, the Web API client adapter: no client-side retries,
  and ``post_once``'s idempotency through message metadata;
- :mod:`~integrations.slack.blocks` — rendering templates into Block Kit, fitted to Slack's limits and
  validated;
- :mod:`~integrations.slack.interactions` — the action, block and callback ids Slack sends back;
- :mod:`~integrations.slack.errors` — the error hierarchy and the classification of Slack's failures.
"""

from integrations.slack.blocks import (
    BlockKitError,
    check_blocks,
    clip,
    fit_blocks,
    mrkdwn_escape,
    render_blocks,
    render_view,
    slack_templates,
)
from integrations.slack.client import (
    MESSAGE_EVENT_TYPE,
    ChatChannel,
    MessageRef,
    SlackChannel,
    build_slack_client,
)
from integrations.slack.errors import (
    SlackAuthError,
    SlackError,
    SlackNotFoundError,
    SlackPermanentError,
    SlackRejectedError,
    SlackTransientError,
    slack_error,
)
from integrations.slack.interactions import (
    APPROVE_ACTION,
    DENY_ACTION,
    DENY_CALLBACK_ID,
    DENY_REASON_ACTION,
    DENY_REASON_BLOCK,
    OPEN_ACTION,
)

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "DENY_CALLBACK_ID",
    "DENY_REASON_ACTION",
    "DENY_REASON_BLOCK",
    "MESSAGE_EVENT_TYPE",
    "OPEN_ACTION",
    "BlockKitError",
    "ChatChannel",
    "MessageRef",
    "SlackAuthError",
    "SlackChannel",
    "SlackError",
    "SlackNotFoundError",
    "SlackPermanentError",
    "SlackRejectedError",
    "SlackTransientError",
    "build_slack_client",
    "check_blocks",
    "clip",
    "fit_blocks",
    "mrkdwn_escape",
    "render_blocks",
    "render_view",
    "slack_error",
    "slack_templates",
]
