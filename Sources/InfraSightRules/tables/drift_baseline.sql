-- Drift detection's learned baseline (InfraSight's own table): per scope (a container
-- image, or `host:NODE` for host processes), what ran and what was contacted. The row of
-- kind `scope` marks when the scope's learning window began; `learned` is 1 for what was
-- seen inside the window, 0 for what arrived after it (and raised an alert).
CREATE TABLE IF NOT EXISTS audit.drift_baseline (
    scope String,
    kind String,
    value String,
    first_seen DateTime64(3),
    learned UInt8
) ENGINE = MergeTree() ORDER BY (scope, kind, value);
