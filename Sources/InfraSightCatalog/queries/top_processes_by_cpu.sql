-- title: Top processes by CPU
-- shows: The processes that used the most CPU in the time range, with faults, I/O and
-- shows: memory mapped (resource_events; no node column, see container_resources).
-- grafana: resources table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT pid, start_time_ns, argMax(comm, wall_time_ms) AS command, any(user) AS user_name, any(container_id) AS container,
    round(sum(cpu_ns) / 1e9, 3) AS cpu_seconds, sum(user_faults + kernel_faults) AS page_faults,
    sum(bytes_read) AS bytes_read, sum(bytes_written) AS bytes_written, sum(vm_mmap_bytes) AS bytes_mapped
FROM audit.resource_events
WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
GROUP BY pid, start_time_ns
ORDER BY cpu_seconds DESC
LIMIT {limit:UInt32}
