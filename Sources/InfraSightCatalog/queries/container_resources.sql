-- title: Resource use by container over time
-- shows: Per interval and container ('host' for host processes): CPU seconds, page faults,
-- shows: bytes read and written, memory mapped. resource_events has no node column (the
-- shows: original schema): in a store fed by several nodes this sums them.
-- grafana: resources timeseries
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: interval_s UInt32 = 10 -- bucket width in seconds
SELECT toStartOfInterval(wall_time_dt, toIntervalSecond({interval_s:UInt32})) AS t,
    if(container_id = '', 'host', concat(any(container_image), ' ', substring(container_id, 1, 12))) AS container,
    round(sum(cpu_ns) / 1e9, 3) AS cpu_seconds, sum(user_faults + kernel_faults) AS page_faults,
    sum(bytes_read) AS bytes_read, sum(bytes_written) AS bytes_written, sum(vm_mmap_bytes) AS bytes_mapped
FROM audit.resource_events
WHERE wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
GROUP BY t, container_id
ORDER BY t, container
