-- title: Sensitive file access
-- shows: Opens and chmods of files under the given path prefixes (credentials, sudo
-- shows: rules, SSH keys, the kernel's memory), newest first, with who did it.
-- grafana: security table 1
-- grafana: files table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: prefixes Array(String) = ['/etc/shadow', '/etc/gshadow', '/etc/sudoers', '/root/.ssh/', '/etc/ssh/', '/proc/kcore', '/var/run/docker.sock', '/run/containerd/containerd.sock'] -- path prefixes to watch
-- param: limit UInt32 = 500 -- at most this many rows
SELECT wall_time_dt AS time, node_name AS node, event_type, filename, flags, return_code, pid, start_time_ns, comm, user, container_id, container_image
FROM audit.tracing_events
WHERE event_type IN ('open', 'chmod')
  AND arrayExists(p -> startsWith(filename, p), {prefixes:Array(String)})
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
ORDER BY wall_time_ms DESC
LIMIT {limit:UInt32}
