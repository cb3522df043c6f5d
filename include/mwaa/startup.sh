#!/bin/sh
# Amazon MWAA startup script for seclake_ml (upload to the environment's S3 bucket and set it as the
# environment's startup script). MWAA runs it on every scheduler, worker and web server container
# before Airflow starts; only the environment variables it exports are kept.
#
# It sets *defaults*. The package reads its configuration in this order (highest first):
#   1. SECLAKE_ML_<FIELD> environment variables (one field each, e.g. SECLAKE_ML_DEDUPE),
#   2. the Airflow Variable "seclake_ml_config" (JSON; see include/config/aws.example.json),
#   3. SECLAKE_ML_CONFIG (the same JSON), used only when that Variable is not set.
# This script therefore exports SECLAKE_ML_CONFIG only, so the Variable can change any field without a
# redeploy. Export a SECLAKE_ML_<FIELD> here only to pin a field for the whole environment.

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
region_db=$(printf '%s' "$region" | tr '-' '_')

# Replace with the bucket/prefix for pairs, models and run summaries (the execution role needs
# read/write there). Left as is, tasks fail with a message naming the work_location field.
work_location="${SECLAKE_ML_DEFAULT_WORK_LOCATION:-s3://REPLACE_ME_WORK_BUCKET/ipinsights}"

if [ -z "${SECLAKE_ML_CONFIG:-}" ]; then
    SECLAKE_ML_CONFIG=$(cat <<JSON
{"backend": "aws", "region": "${region}", "glue_database": "amazon_security_lake_glue_db_${region_db}", "athena_workgroup": "primary", "source_version": 2, "sources": ["vpc_flow:instance_peer", "route53:instance_resolved_ip", "cloudtrail_signin:principal_ip", "cloudtrail_api:principal_ip"], "work_location": "${work_location}"}
JSON
)
    export SECLAKE_ML_CONFIG
fi

# Task retry delay (seconds) used by the DAGs' default_args.
export SECLAKE_ML_RETRY_DELAY_SECONDS="${SECLAKE_ML_RETRY_DELAY_SECONDS:-300}"
