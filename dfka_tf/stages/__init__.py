"""The resumable stages of a run and the one ritual that runs them (`base.run_stages`)."""
