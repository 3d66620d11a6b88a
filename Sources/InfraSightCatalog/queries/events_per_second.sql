-- title: Events per second by table and node
-- shows: How many events each table received per second, per node, over the time range:
-- shows: the overall load, and which node or plugin is busy.
-- grafana: overview timeseries 1
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: interval_s UInt32 = 10 -- bucket width in seconds
SELECT t, table, node, round(count() / {interval_s:UInt32}, 2) AS events_per_second
FROM (
    SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})) AS t, 'tracing_events' AS table, node_name AS node FROM audit.tracing_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})), 'network_events', node_name FROM audit.network_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})), 'ptrace_events', node_name FROM audit.ptrace_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})), 'mmap_events', node_name FROM audit.mmap_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})), 'mount_events', node_name FROM audit.mount_events
    WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
)
GROUP BY t, table, node
ORDER BY t, table, node
