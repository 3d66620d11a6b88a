-- Alerts the detection rules raised (InfraSight's own table, written by run and server):
-- one row per rule a stored row matched, with the row's key columns and the whole row.
-- tags: the rule's tags, comma-separated (MITRE ATT&CK technique ids and words).
CREATE TABLE IF NOT EXISTS audit.alerts (
    time DateTime64(3),
    node_name String,
    rule String,
    severity String,
    tags String,
    source_table String,
    pid UInt32,
    start_time_ns UInt64,
    comm String,
    user String,
    container_id String,
    container_image String,
    output String,
    row_json String
) ENGINE = MergeTree() ORDER BY time;
