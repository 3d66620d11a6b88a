-- title: Events by table
-- shows: Per table over the time range: events, failed calls (negative return code),
-- shows: nodes, processes and containers seen.
-- grafana: overview table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
SELECT table, events, failed, nodes, processes, containers FROM (
    SELECT 'tracing_events' AS table, count() AS events, countIf(return_code < 0) AS failed, uniqExact(node_name) AS nodes,
        uniqExact(pid, start_time_ns) AS processes, uniqExactIf(container_id, container_id != '') AS containers
    FROM audit.tracing_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT 'network_events' AS table, count() AS events, countIf(return_code < 0) AS failed, uniqExact(node_name) AS nodes,
        uniqExact(pid, start_time_ns) AS processes, uniqExactIf(container_id, container_id != '') AS containers
    FROM audit.network_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT 'ptrace_events' AS table, count() AS events, countIf(return_code < 0) AS failed, uniqExact(node_name) AS nodes,
        uniqExact(pid, start_time_ns) AS processes, uniqExactIf(container_id, container_id != '') AS containers
    FROM audit.ptrace_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT 'mmap_events' AS table, count() AS events, countIf(return_code < 0) AS failed, uniqExact(node_name) AS nodes,
        uniqExact(pid, start_time_ns) AS processes, uniqExactIf(container_id, container_id != '') AS containers
    FROM audit.mmap_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT 'mount_events' AS table, count() AS events, countIf(return_code < 0) AS failed, uniqExact(node_name) AS nodes,
        uniqExact(pid, start_time_ns) AS processes, uniqExactIf(container_id, container_id != '') AS containers
    FROM audit.mount_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
)
ORDER BY table
