import Foundation
import InfraSightCatalog
import InfraSightConsole
import InfraSightStorage
import InfraSightTestSupport
import Logging

/// Loads the console benchmark's host into `store`: `rows` rows (90% tracing, 10%
/// network), a synthetic host of 20,000-odd processes in a tree, 50 events each, spread
/// over the last hour. Returns the seconds the load took.
func consoleLoad(into store: EmbeddedStore, rows: Int) throws -> Double {
    _ = try store.prepare(QueryCatalog.tables)
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    let tracing = rows * 9 / 10, network = rows - tracing
    // Process p (from 1000) does 50 events, the first its execve; its parent is
    // 1000 + (p - 1000) / 10, so every process has a parent and ten children.
    let generated = """
        1000 + intDiv(number, 50) AS p, if(p = 1000, 1, 1000 + intDiv(p - 1000, 10)) AS pp,
        \(now) - 3600000 + intDiv(number * 3600000, \(tracing)) AS ms
        """
    let started = Date()
    _ = try store.query("""
        INSERT INTO audit.tracing_events (pid, ppid, uid, gid, user, comm, filename, argv, event_type, syscall, return_code,
            node_name, wall_time_ms, wall_time_dt, monotonic_ts_enter_ns, monotonic_ts_exit_ns, start_time_ns, parent_start_time_ns)
        SELECT p, pp, 1000, 1000, 'bench', concat('cmd', toString(p % 97)),
            if(number % 50 = 0, concat('/usr/bin/cmd', toString(p % 97)), concat('/var/lib/app/file', toString(number % 5000))),
            if(number % 50 = 0, concat('cmd', toString(p % 97), ' --run ', toString(p)), ''),
            if(number % 50 = 0, 'execve', if(number % 50 = 49, 'chmod', 'open')), if(number % 50 = 0, 'execve', 'openat'),
            if(number % 13 = 0, -2, 0), 'bench', ms, fromUnixTimestamp64Milli(ms), number * 1000, number * 1000 + 500, p * 1000, pp * 1000
        FROM (SELECT number, \(generated) FROM numbers(\(tracing)))
        """, format: "TSV")
    _ = try store.query("""
        INSERT INTO audit.network_events (pid, ppid, uid, gid, user, comm, sa_family, protocol, saddr_ipv4, daddr_ipv4, sport, dport,
            event_type, return_code, node_name, wall_time_ms, wall_time_dt, monotonic_ts_enter_ns, start_time_ns, parent_start_time_ns)
        SELECT p, pp, 1000, 1000, 'bench', concat('cmd', toString(p % 97)), 'AF_INET', 'tcp', '10.0.0.1', concat('10.1.', toString(number % 200), '.1'),
            toString(30000 + number % 20000), '443', 'connect', if(number % 17 = 0, -111, 0), 'bench', ms, fromUnixTimestamp64Milli(ms),
            number * 1000 * 10 + 1, p * 1000, pp * 1000
        FROM (SELECT number * 10 AS number, \(generated) FROM numbers(\(network)))
        """, format: "TSV")
    return Date().timeIntervalSince(started)
}

/// The console's process explorer over a store of `rows` rows (90% tracing, 10%
/// network): a synthetic host of 20,000-odd processes in a tree, 50 events each, spread
/// over the last hour. Headless Chromium (over WebDriver) opens the page with a search and
/// a selected process, `rounds` times from a blank page; the figure is the time from
/// navigation to every panel's data on screen (the page's own `firstLoadMs`), plus what
/// each of the page's three queries takes on the server alone.
func consoleBench(rows: Int, rounds: Int) throws -> String {
    let data = NSTemporaryDirectory() + "/infrasight-bench-console-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: data) }
    let store = try EmbeddedStore(dataDir: data, library: nil)
    defer { store.close() }
    let loadSeconds = try consoleLoad(into: store, rows: rows)
    return try consoleMeasure(store, loadSeconds: loadSeconds, rounds: rounds)
}

/// The process explorer's figures over `store` as `consoleLoad` filled it.
func consoleMeasure(_ store: EmbeddedStore, loadSeconds: Double, rounds: Int) throws -> String {
    let stored = try String(decoding: store.query("SELECT (SELECT count() FROM audit.tracing_events) + (SELECT count() FROM audit.network_events)", format: "TSV"), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)

    let token = "bench-\(UUID().uuidString)"
    let console = ConsoleServer(api: ConsoleAPI(store: store, status: { [] }), access: ConsoleAccess(token: token, secure: false),
                                logger: Logger(label: "bench"))
    let port = try console.start(host: "127.0.0.1", port: 0, tls: nil)
    defer { console.stop() }
    let base = "http://127.0.0.1:\(port)/"
    // A process in the middle of the tree (a parent above, ten children below) and of the
    // hour: a large store's load takes minutes, and the range is the last hour.
    let processes = (Int(try String(decoding: store.query("SELECT count() FROM audit.tracing_events", format: "TSV"), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) / 50
    let pid = 1000 + max(processes / 2, 1234)
    let selection = "bench|\(pid)|\(pid * 1000)"
    let page = base + "#/processes?range=1h&q=cmd\(pid % 97)&sel=" + (selection.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")

    // The server side alone: each of the page's queries, over HTTP, as the page asks them.
    let range = QueryCatalog.timeRange(lastSeconds: 3600)
    var serverMs: [String: Double] = [:]
    for (name, extra) in [("recent_execs", ["search": "cmd\(pid % 97)", "limit": "200"]),
                          ("process_tree", ["node": "bench", "pid": "\(pid)", "start_time_ns": "\(pid * 1000)"]),
                          ("process_timeline", ["node": "bench", "pid": "\(pid)", "start_time_ns": "\(pid * 1000)", "limit": "2000"])] {
        var items = URLComponents()
        items.queryItems = range.merging(extra) { a, _ in a }.map { URLQueryItem(name: $0.key, value: $0.value) }
        let url = base + "api/query/\(name)?" + (items.percentEncodedQuery ?? "")
        _ = try HTTPClient.request("GET", url, headers: ["Authorization": "Bearer \(token)"]) // warm
        var best = Double.infinity
        for _ in 0..<3 {
            let t = Date()
            let answer = try HTTPClient.request("GET", url, headers: ["Authorization": "Bearer \(token)"])
            guard answer.status == 200 else { throw StorageError("\(name): \(answer.text)") }
            best = min(best, Date().timeIntervalSince(t) * 1000)
        }
        serverMs[name] = best
    }

    let browser = try Browser()
    defer { browser.close() }
    try browser.open(base + "?token=\(token)")
    var loads: [Double] = []
    var treeNodes = 0
    for _ in 0..<rounds {
        try browser.open("about:blank")
        try browser.open(page)
        try browser.waitFor("the process explorer", timeout: 60, "return document.body.dataset.loaded === '1'")
        let errors = try browser.texts(".error").filter { !$0.isEmpty }
        guard errors.isEmpty else { throw StorageError("the page shows errors: \(errors)") }
        treeNodes = try browser.texts("#tree li.node").count
        guard let ms = try browser.run("return Number(document.body.dataset.firstLoadMs)") as? Double else { throw StorageError("no firstLoadMs") }
        loads.append(ms)
    }
    loads.sort()
    let server = serverMs.sorted { $0.key < $1.key }.map { "\"\($0.key)_ms\":\(String(format: "%.1f", $0.value))" }.joined(separator: ",")
    return """
        {"bench":"console_process_explorer","rows_stored":\(stored),"load_seconds":\(String(format: "%.1f", loadSeconds)),\
        "tree_nodes":\(treeNodes),"rounds":\(rounds),"page_load_ms_median":\(Int(loads[loads.count / 2])),"page_load_ms_max":\(Int(loads.last!)),\
        \(server),"target_ms":1000}
        """
}

/// Photographs console pages in headless Chromium in real time (the live rates are
/// counters' changes over real seconds, which a virtual-time screenshot cannot show):
/// each `name=#/hash` page is opened, its data awaited, and saved as `out/console-NAME.png`.
/// scripts/console-screenshots.sh uses it for README's pictures. `url` is the console's
/// login URL (`http://HOST:PORT/?token=TOKEN`): opened first, it starts a session.
func consoleScreenshots(url login: String, out: String, pages: [String]) throws -> String {
    let browser = try Browser()
    defer { browser.close() }
    try browser.open(login)
    let url = String(login.prefix { $0 != "?" })
    var saved: [String] = []
    for page in pages {
        guard let equals = page.firstIndex(of: "=") else { throw StorageError("a page is NAME=#/HASH, got \(page)") }
        let name = page[..<equals], hash = page[page.index(after: equals)...]
        try browser.open("about:blank")
        try browser.open(url + hash)
        try browser.waitFor("\(name) to load", timeout: 60, "return document.body.dataset.loaded === '1'")
        if name == "overview" {
            try browser.waitFor("live rates", timeout: 20, "const v = document.querySelector('#rate-received .value'); return !!v && parseFloat(v.innerText) > 0")
        }
        let path = "\(out)/console-\(name).png"
        try browser.screenshot(to: path)
        saved.append(path)
    }
    return saved.joined(separator: "\n")
}
