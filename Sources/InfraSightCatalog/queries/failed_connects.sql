-- title: Failed connections
-- shows: Outbound connections that failed (refused, unreachable, timed out), newest
-- shows: first. A non-blocking connect's -115 (EINPROGRESS) is not a failure.
-- grafana: network table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT wall_time_dt AS time, node_name AS node, protocol, multiIf(protocol = 'unix', unix_path, sa_family = 'AF_INET6', concat('[', daddr_ipv6, ']:', dport), concat(daddr_ipv4, ':', dport)) AS destination, ifNull(resolved_domain, '') AS domain,
    return_code, pid, comm, user, container_id
FROM audit.network_events
WHERE event_type = 'connect' AND return_code < 0 AND return_code != -115
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
ORDER BY wall_time_ms DESC
LIMIT {limit:UInt32}
