-- title: What a process did
-- shows: Everything one process did, in the order the kernel saw it: programs it ran,
-- shows: files it opened and chmodded, connections, ptrace, mounts and memory mappings.
-- grafana: processes table 3
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String -- the process's node
-- param: pid UInt32 -- the process's pid (on its node)
-- param: start_time_ns UInt64 -- the process's start time (with pid, names one process)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT time, source, event_type, detail, return_code, comm
FROM (
    SELECT wall_time_dt AS time, monotonic_ts_enter_ns AS ts, 'tracing' AS source, event_type,
        if(event_type = 'execve', concat(filename, '  ', argv), if(event_type = 'chmod', concat(filename, ' mode ', lower(hex(mode))), filename)) AS detail,
        return_code, comm
    FROM audit.tracing_events WHERE node_name = {node:String} AND pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
      AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
    UNION ALL
    SELECT wall_time_dt, monotonic_ts_enter_ns, 'network', event_type,
        multiIf(protocol = 'unix', unix_path,
                sa_family = 'AF_INET6', concat('[', saddr_ipv6, ']:', sport, ' -> [', daddr_ipv6, ']:', dport),
                concat(saddr_ipv4, ':', sport, ' -> ', daddr_ipv4, ':', dport))
            || if(isNull(resolved_domain) OR resolved_domain = '', '', concat(' (', assumeNotNull(resolved_domain), ')')),
        return_code, comm
    FROM audit.network_events WHERE node_name = {node:String} AND pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
      AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
    UNION ALL
    SELECT wall_time_dt, monotonic_ts_enter_ns, 'ptrace', event_type, concat(request_name, ' pid ', toString(target_pid)), return_code, comm
    FROM audit.ptrace_events WHERE node_name = {node:String} AND pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
      AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
    UNION ALL
    SELECT wall_time_dt, monotonic_ts_enter_ns, 'mount', event_type, concat(dev_name, ' on ', dir_name, if(type = '', '', concat(' type ', type))), return_code, comm
    FROM audit.mount_events WHERE node_name = {node:String} AND pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
      AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
    UNION ALL
    SELECT wall_time_dt, monotonic_ts_enter_ns, 'mmap', event_type,
        concat(toString(len), ' bytes prot ', toString(prot), if(bitAnd(prot, 6) = 6, ' (W+X)', ''), ' fd ', toString(toInt64(fd))), return_code, comm
    FROM audit.mmap_events WHERE node_name = {node:String} AND pid = {pid:UInt32} AND start_time_ns = {start_time_ns:UInt64}
      AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
)
ORDER BY ts
LIMIT {limit:UInt32}
