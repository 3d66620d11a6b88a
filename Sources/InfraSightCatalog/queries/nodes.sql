-- title: Nodes
-- shows: The nodes that sent events in the time range, with their last event: for a
-- shows: node picker.
-- grafana: variable node
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
SELECT node_name AS node, max(wall_time_dt) AS last_event, count() AS events
FROM audit.tracing_events
WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
GROUP BY node
ORDER BY node
