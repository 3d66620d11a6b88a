-- title: Permission changes
-- shows: chmod, fchmod and fchmodat calls, newest first, the mode in octal and whether
-- shows: it sets the setuid or setgid bit or makes the file writable by everyone.
-- grafana: files table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT wall_time_dt AS time, node_name AS node, syscall, filename, lower(hex(mode)) AS mode_hex,
    concat(toString(intDiv(bitAnd(mode, 3584), 512)), toString(intDiv(bitAnd(mode, 448), 64)), toString(intDiv(bitAnd(mode, 56), 8)), toString(bitAnd(mode, 7))) AS mode_octal,
    bitAnd(mode, 2048) != 0 AS setuid, bitAnd(mode, 1024) != 0 AS setgid, bitAnd(mode, 2) != 0 AS world_writable,
    return_code, pid, comm, user, container_id
FROM audit.tracing_events
WHERE event_type = 'chmod'
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
ORDER BY wall_time_ms DESC
LIMIT {limit:UInt32}
