import Foundation
import Glibc
import InfraSightCore
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where alerts go besides `audit.alerts`: JSON lines on stdout, appended to a file (0600),
/// and POSTed to webhooks. Each alert is one JSON object: the alerts table's columns, with
/// `row` (the source row as an object) in place of `row_json` and `tags` as an array.
///
/// A webhook is fed by a bounded queue (`maxQueued` alerts) and a thread of its own that
/// POSTs each alert (`Content-Type: application/json`), retrying a failure (a network
/// error or a status outside 2xx) with backoff up to `attempts` times. An alert that finds
/// the queue full, or fails every attempt, is counted in `webhookDrops`.
public final class AlertOutputs: Sendable {
    public static let maxQueued = 10_000
    public static let attempts = 4

    let stdout: Bool
    /// The alerts file; nil once `finish` closed it (a late alert is not written anywhere
    /// else). Its lock also keeps each `send`'s lines together on stdout and in the file.
    private let fileDescriptor: Mutex<Int32?>
    let hooks: [Webhook]
    public let webhookDrops = Atomic<UInt64>(0)
    public let webhookSent = Atomic<UInt64>(0)

    /// Opens the file (created 0600, appended to); throws a one-line reason.
    public init(stdout: Bool, file: String?, webhooks: [String]) throws(RuleProblem) {
        self.stdout = stdout
        if let file {
            let fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw RuleProblem(file, "cannot open the alerts file: \(String(cString: strerror(errno)))") }
            fileDescriptor = Mutex(fd)
        } else {
            fileDescriptor = Mutex(nil)
        }
        var hooks: [Webhook] = []
        for url in webhooks {
            guard let target = URL(string: url), ["http", "https"].contains(target.scheme ?? "") else {
                throw RuleProblem(url, "a webhook is an http(s) URL")
            }
            hooks.append(Webhook(url: target))
        }
        self.hooks = hooks
        for hook in hooks { hook.start(self) }
    }

    /// The rule of an alert's JSON line.
    static func ruleName(_ line: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        return object["rule"] as? String
    }

    /// An alerts-table JSON line with `row_json` (a string) replaced by `row` (an object).
    static func outputLine(_ line: String) -> String {
        guard var object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return line }
        if let tags = object["tags"] as? String { object["tags"] = tags.split(separator: ",").map(String.init) }
        if let text = object.removeValue(forKey: "row_json") as? String {
            object["row"] = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) ?? text
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return line }
        return String(decoding: data, as: UTF8.self)
    }

    private var hasFile: Bool { fileDescriptor.withLock { $0 != nil } }

    public func send(_ alerts: [String]) {
        guard stdout || hasFile || !hooks.isEmpty else { return }
        let lines = alerts.map(Self.outputLine)
        let text = Data(lines.map { $0 + "\n" }.joined().utf8)
        fileDescriptor.withLock { fd in
            if stdout { FileHandle.standardOutput.write(text) }
            if let fd { text.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) } }
        }
        for hook in hooks {
            for line in lines where !hook.enqueue(line) { webhookDrops.add(1, ordering: .relaxed) }
        }
    }

    /// Gives the webhooks up to `timeout` seconds to send what they hold, then stops them;
    /// what is left is counted as dropped.
    public func finish(timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        for hook in hooks { webhookDrops.add(UInt64(hook.stop(deadline: deadline)), ordering: .relaxed) }
        fileDescriptor.withLock { fd in
            if let fd { close(fd) }
            fd = nil
        }
    }

    final class Webhook: Sendable {
        let url: URL
        let queue = WorkQueue<String>(maxItems: AlertOutputs.maxQueued)

        init(url: URL) { self.url = url }

        func start(_ outputs: AlertOutputs) {
            queue.start(name: "infrasight-webhook") { [self] line in
                if deliver(line) { outputs.webhookSent.add(1, ordering: .relaxed) } else { outputs.webhookDrops.add(1, ordering: .relaxed) }
            }
        }

        func enqueue(_ line: String) -> Bool { queue.offer(line) }

        /// Returns how many alerts were still queued when the deadline passed.
        func stop(deadline: Date) -> Int {
            queue.finish(timeout: deadline.timeIntervalSinceNow).count
        }

        /// POSTs with retries, backing off, until `finish`'s deadline.
        func deliver(_ line: String) -> Bool {
            for attempt in 0..<AlertOutputs.attempts {
                let deadline = queue.deadline
                guard Date() < deadline else { return false }
                if attempt > 0 { Thread.sleep(forTimeInterval: min(0.25 * pow(2, Double(attempt)), max(0, deadline.timeIntervalSinceNow))) }
                if post(line) { return true }
            }
            return false
        }

        /// Redirects are not followed: a webhook answers where it was configured, and a 3xx
        /// counts as a failed attempt (a redirect could otherwise carry alerts, which name
        /// users, files and hosts, to a host nobody configured).
        static let session = URLSession(configuration: .ephemeral, delegate: RefuseRedirects(), delegateQueue: nil)

        final class RefuseRedirects: NSObject, URLSessionTaskDelegate, Sendable {
            func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                            newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
                completionHandler(nil)
            }
        }

        func post(_ line: String) -> Bool {
            var request = URLRequest(url: url, timeoutInterval: 10)
            request.httpMethod = "POST"
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(line.utf8)
            let done = DispatchSemaphore(value: 0)
            let ok = Atomic<Bool>(false)
            Self.session.dataTask(with: request) { _, response, error in
                if error == nil, let status = (response as? HTTPURLResponse)?.statusCode, (200..<300).contains(status) { ok.store(true, ordering: .relaxed) }
                done.signal()
            }.resume()
            done.wait()
            return ok.load(ordering: .relaxed)
        }
    }
}
