"""Contributing a module upstream: `deepmarket submit` and the pull request's review.

`plan` decides (branch names, the commit's files, the pull request's text), `errors` turns
GitHub's answers into one line each, `github` is the thin github3.py shell that talks to
GitHub, and `review` is what the catalog's validate workflow runs on a pull request.
"""
