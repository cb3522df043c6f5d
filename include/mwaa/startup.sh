#!/bin/sh
# Amazon MWAA startup script for seclake_ml (`make mwaa-bundle` copies it to dist/mwaa/startup.sh; upload
# it to the environment's S3 bucket and set it as the environment's startup script). MWAA sources it on
# every scheduler, worker and web server container before the requirements are installed and Airflow
# starts; only the environment variables it exports are kept.
#
# It sets *defaults*. The package reads its configuration in this order (highest first):
#   1. SECLAKE_ML_<FIELD> environment variables (one field each, e.g. SECLAKE_ML_DEDUPE),
#   2. the Airflow Variable "seclake_ml_config" (JSON; see include/config/aws.example.json),
#   3. SECLAKE_ML_CONFIG (the same JSON), used only when that Variable is not set.
# This script therefore exports SECLAKE_ML_CONFIG only, so the Variable can change any field without a
# redeploy. Export a SECLAKE_ML_<FIELD> here only to pin a field for the whole environment.
#
# The defaults match the least-privilege policies of include/iam (their placeholders in brackets):
# Athena workgroup `seclake-ml` [${AthenaWorkgroup}], resource prefix `seclake-ml` [${ResourcePrefix}],
# registry path /seclake-ml/ipinsights [${ParameterPath}]. Change both together. On MWAA this script is
# the place for plain environment variables: edit the defaults below (or export the variables above
# them) for the fields that have no safe default:
#   SECLAKE_ML_DEFAULT_WORK_LOCATION        s3://<work bucket>/<prefix> [${WorkBucket}/${WorkPrefix}]
#   SECLAKE_ML_DEFAULT_SAGEMAKER_ROLE_ARN   the SageMaker execution role [${SageMakerExecutionRoleName}]

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
region_db=$(printf '%s' "$region" | tr '-' '_')

# Replace with the bucket/prefix for pairs, models and run summaries (the execution role needs
# read/write there). Left as is, tasks fail with a message naming the work_location field.
work_location="${SECLAKE_ML_DEFAULT_WORK_LOCATION:-s3://REPLACE_ME_WORK_BUCKET/ipinsights}"
athena_workgroup="${SECLAKE_ML_DEFAULT_ATHENA_WORKGROUP:-seclake-ml}"
role_arn="${SECLAKE_ML_DEFAULT_SAGEMAKER_ROLE_ARN:-}"

sagemaker='"resource_prefix": "seclake-ml", "ssm_path": "/seclake-ml/ipinsights"'
if [ -n "$role_arn" ]; then
    sagemaker="${sagemaker}, \"role_arn\": \"${role_arn}\""
fi

if [ -z "${SECLAKE_ML_CONFIG:-}" ]; then
    SECLAKE_ML_CONFIG=$(cat <<JSON
{"backend": "aws", "region": "${region}", "glue_database": "amazon_security_lake_glue_db_${region_db}", "athena_workgroup": "${athena_workgroup}", "source_version": 2, "sources": ["vpc_flow:instance_peer", "route53:instance_resolved_ip", "cloudtrail_signin:principal_ip", "cloudtrail_api:principal_ip"], "work_location": "${work_location}", "extra": {"sagemaker": {${sagemaker}}}}
JSON
)
    export SECLAKE_ML_CONFIG
fi

# Task retry delay (seconds) used by the DAGs' default_args.
export SECLAKE_ML_RETRY_DELAY_SECONDS="${SECLAKE_ML_RETRY_DELAY_SECONDS:-300}"
