"""The ids grantflow gives its Slack buttons, modal and messages, which Slack sends back in interaction
payloads: the templates (``templates/slack/``) spell them out, the Slack edge (``web/slack_app.py``) routes on
them. Constants only — changing one breaks messages already posted, whose buttons carry the old id.
"""

from __future__ import annotations

APPROVE_ACTION = "grantflow_approve"
DENY_ACTION = "grantflow_deny"
OPEN_ACTION = "grantflow_open"
DENY_CALLBACK_ID = "grantflow_deny_reason"
DENY_REASON_BLOCK = "gf_deny_reason"
DENY_REASON_ACTION = "reason"
