"""Jira as an edge: ``POST /jira/webhook`` turns a person's transition of a request's ticket into a
decision, and an issue created in the intake project into a request.

One module per concern:

- :mod:`web.jira.authenticity`: the signature check, and handling each delivery once (in memory and
  through ledger markers), and the HTTP answers;
- :mod:`web.jira.people`: which directory person a Jira accountId is;
- :mod:`web.jira.decisions`: status changes as decisions, and moving tickets back while a request waits;
- :mod:`web.jira.intake`: issues in the intake project as requests;
- :mod:`web.jira.connection`: the one Jira client they share;
- :mod:`web.jira.edge`: :class:`JiraEdge`, which ties them, and :func:`build_jira_edge`;
- :mod:`web.jira.router`: the HTTP route (imported by :mod:`web.app` only).
"""

from web.jira.edge import JiraEdge, build_jira_edge

__all__ = ["JiraEdge", "build_jira_edge"]
