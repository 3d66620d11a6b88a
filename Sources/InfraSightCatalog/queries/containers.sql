-- title: Containers
-- shows: Every container seen in the time range: image, labels, nodes, first and last event,
-- shows: processes, programs run, files opened and connections made.
-- grafana: resources table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT container_id, any(container_image) AS image, any(labels_json) AS labels, groupUniqArray(3)(node_name) AS nodes,
    min(wall_time_dt) AS first_seen, max(wall_time_dt) AS last_seen, uniqExact(pid, start_time_ns) AS processes,
    countIf(event_type = 'execve') AS execs, countIf(event_type = 'open') AS opens, sum(connects) AS connections
FROM (
    SELECT container_id, container_image, toString(container_labels_json) AS labels_json, node_name, wall_time_dt, pid, start_time_ns, event_type, 0 AS connects
    FROM audit.tracing_events WHERE container_id != '' AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT container_id, container_image, toString(container_labels_json), node_name, wall_time_dt, pid, start_time_ns, event_type, 1
    FROM audit.network_events WHERE container_id != '' AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
)
GROUP BY container_id
ORDER BY last_seen DESC
LIMIT {limit:UInt32}
