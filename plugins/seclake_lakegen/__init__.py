"""Sample Security Lake generator: a development tool, never deployed with the runtime package.

``generate_lake`` writes a local lake in the Security Lake S3 layout (VPC Flow, Route 53, CloudTrail
management events as OCSF Parquet) with injected anomalies and their ground truth; ``drop_batch`` adds
one new day to it. ``python -m seclake_ml lake generate|drop-batch`` call these when this package is on
``sys.path`` (a development checkout); the MWAA bundle leaves it out.
"""
