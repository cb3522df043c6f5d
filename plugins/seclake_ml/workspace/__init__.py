"""The analyst workspace: read-only views of findings, models and scoring batches (:mod:`.data`)."""
