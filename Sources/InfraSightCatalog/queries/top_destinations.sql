-- title: Top destinations
-- shows: Where outbound connections go: address and port, resolved domain, how many
-- shows: connections, how many failed, from how many commands and containers.
-- grafana: network table
-- param: from DateTime64(3) -- start of the time range
-- param: to DateTime64(3) -- end of the time range
-- param: node String = '' -- node name ('' for every node)
-- param: container String = '' -- container id or its prefix ('' for every container and the host)
-- param: user String = '' -- user name ('' for every user)
-- param: comm String = '' -- command name ('' for every command)
-- param: limit UInt32 = 500 -- at most this many rows
SELECT multiIf(protocol = 'unix', unix_path, sa_family = 'AF_INET6', concat('[', daddr_ipv6, ']:', dport), concat(daddr_ipv4, ':', dport)) AS destination, ifNull(any(resolved_domain), '') AS domain, count() AS connections,
    countIf(return_code < 0 AND return_code != -115) AS failed, uniqExact(comm) AS commands,
    groupUniqArray(5)(comm) AS some_commands, uniqExactIf(container_id, container_id != '') AS containers
FROM audit.network_events
WHERE event_type = 'connect' AND protocol != 'unix'
  AND wall_time_ms BETWEEN toUnixTimestamp64Milli({from:DateTime64(3)}) AND toUnixTimestamp64Milli({to:DateTime64(3)})
  AND ({node:String} = '' OR node_name = {node:String})
  AND startsWith(container_id, {container:String})
  AND ({user:String} = '' OR user = {user:String})
  AND ({comm:String} = '' OR comm = {comm:String})
GROUP BY destination
ORDER BY connections DESC
LIMIT {limit:UInt32}
