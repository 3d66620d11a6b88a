-- title: Process launches
-- shows: Programs started (execve), newest first: command line, user, parent, container.
-- shows: `search` finds a text anywhere in the command line, program path or command name.
-- grafana: processes table 1
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: search String = '' -- text to find in argv, filename or comm ('' for all)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT wall_time_dt AS time, node_name AS node, pid, start_time_ns, ppid, parent_start_time_ns, user, uid, comm,
    filename, argv, return_code, container_id, container_image
FROM audit.tracing_events
WHERE event_type = 'execve'
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
  AND ({search:String} = '' OR positionCaseInsensitive(argv, {search:String}) > 0
       OR positionCaseInsensitive(filename, {search:String}) > 0 OR positionCaseInsensitive(comm, {search:String}) > 0)
ORDER BY wall_time_ms DESC
LIMIT {limit:UInt32}
