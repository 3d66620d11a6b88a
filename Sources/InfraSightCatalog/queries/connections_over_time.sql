-- title: Connections over time
-- shows: Connections per interval by direction, and how many failed.
-- grafana: network timeseries
-- grafana: overview timeseries
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: interval_s UInt32 = 10 -- bucket width in seconds
SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})) AS t,
    countIf(event_type = 'connect') AS outbound, countIf(event_type != 'connect') AS inbound,
    countIf(return_code < 0 AND return_code != -115) AS failed
FROM audit.network_events
WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
GROUP BY t
ORDER BY t
