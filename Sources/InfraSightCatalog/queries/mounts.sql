-- title: Mounts
-- shows: mount and umount calls, newest first: what was mounted where, by whom, in
-- shows: which container.
-- grafana: security table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT wall_time_dt AS time, node_name AS node, event_type, dev_name, dir_name, type, flags, return_code, pid, comm, user, container_id, container_image
FROM audit.mount_events
WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
ORDER BY wall_time_ms DESC
LIMIT {limit:UInt32}
