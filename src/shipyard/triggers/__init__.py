"""Triggers: what starts a deploy besides `shipyard deploy` (a git push to Shipyard's remote, a
watched branch's new commit, a GitHub or GitLab push webhook, a deploy hook), and what decides
whether a commit deploys a service (skip markers, buildFilter, autoDeployTrigger)."""
