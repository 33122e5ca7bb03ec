"""PyGithub through the signet agent: driven by the `agent` tests in cli.rs.

Reads GITHUB_API_URL and GITHUB_TOKEN (a dummy: the agent drops it), as
`signet agent env` sets them, and prints one JSON object of what it saw.
"""

import json
import os

from github import Auth, Github


def connect(lazy):
    return Github(
        base_url=os.environ["GITHUB_API_URL"],
        auth=Auth.Token(os.environ["GITHUB_TOKEN"]),
        retry=None,
        seconds_between_requests=0,
        lazy=lazy,
    )


github = connect(lazy=False)

# Non-lazy: GET /repos/o/r, then get_issues() follows the `url` from that
# body, and the Link header's `next` page after page.
repo = github.get_repo("o/r")
issues = [issue.number for issue in repo.get_issues()]

# Lazy: no request for the repository; the issues URL is built from base_url.
lazy = connect(lazy=True).get_repo("o/r")
lazy_issues = [issue.number for issue in lazy.get_issues()]

# An issue's own `url` from a listed body, fetched again.
first = repo.get_issues()[0]
first.update()

print(
    json.dumps(
        {
            "full_name": repo.full_name,
            "url": repo.url,
            "issues": issues,
            "lazy_issues": lazy_issues,
            "issue_url": first.url,
            "issue_title": first.title,
        }
    )
)
