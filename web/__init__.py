"""The HTTP edge of grantflow: REST API, review pages (and later the Slack and Jira endpoints)."""
