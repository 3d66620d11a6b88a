-- title: Writable and executable mappings
-- shows: Memory mapped both writable and executable (PROT_WRITE|PROT_EXEC): JITs do it,
-- shows: and so does injected code. By process, with counts and the last one.
-- grafana: security table 2
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT node_name AS node, pid, start_time_ns, argMax(comm, wall_time_ms) AS command, any(user) AS user_name, any(container_id) AS container,
    count() AS mappings, sum(len) AS bytes, max(wall_time_dt) AS last
FROM audit.mmap_events
WHERE bitAnd(prot, 6) = 6 AND return_code >= 0
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
GROUP BY node, pid, start_time_ns
ORDER BY last DESC
LIMIT {limit:UInt32}
