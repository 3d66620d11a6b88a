-- title: Container activity over time
-- shows: Events per interval per container (image and short id), all tables with a node.
-- grafana: resources timeseries
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: interval_s UInt32 = 10 -- bucket width in seconds
SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})) AS t,
    concat(any(container_image), ' ', substring(container_id, 1, 12)) AS container, count() AS events
FROM (
    SELECT wall_time_dt, container_id, container_image FROM audit.tracing_events WHERE container_id != '' AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT wall_time_dt, container_id, container_image FROM audit.network_events WHERE container_id != '' AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
    UNION ALL
    SELECT wall_time_dt, container_id, container_image FROM audit.mmap_events WHERE container_id != '' AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
)
GROUP BY t, container_id
ORDER BY t, container
