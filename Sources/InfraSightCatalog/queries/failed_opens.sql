-- title: Failed opens by process
-- shows: Which commands fail to open files, how often, with which errors (-2 ENOENT,
-- shows: -13 EACCES, -1 EPERM) and some of the files: probing, missing configuration,
-- shows: permission problems.
-- grafana: files table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT comm, node_name AS node, count() AS failures, uniqExact(filename) AS files,
    topK(3)(return_code) AS errors, groupUniqArray(5)(filename) AS some_files, max(wall_time_dt) AS last
FROM audit.tracing_events
WHERE event_type = 'open' AND return_code < 0
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
GROUP BY comm, node
ORDER BY failures DESC
LIMIT {limit:UInt32}
