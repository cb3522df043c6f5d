"""CloudTrail risk scoring: is what this principal did, from where and how, risky.

An engine with no Airflow, like :mod:`seclake_ml.ipinsights`: events are read from the lake
(:mod:`.events`), turned into features against the principal's history (:mod:`.features`), scored by
categorical outlier detection (:mod:`.outliers`), an unsupervised combination and, once analysts have
labelled enough events, a supervised regressor (:mod:`.models`). Every score is 0-100, higher = riskier.
"""
