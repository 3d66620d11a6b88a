import Foundation
import Glibc

/// Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`):
/// the console's tests and benchmark load real pages, type, click and read what a person
/// would see. One chromedriver process per `Browser`; `close()` ends both.
public final class Browser {
    let driver: BackgroundProcess
    let base: URL
    let session: String
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    /// An element of the page, by its WebDriver id.
    public struct Element {
        let id: String
    }

    public init(width: Int = 1400, height: Int = 1000) throws {
        let port = try freeLoopbackPort()
        driver = try BackgroundProcess("/usr/bin/chromedriver", ["--port=\(port)"])
        base = URL(string: "http://127.0.0.1:\(port)")!
        var last: Error?
        for _ in 0..<100 {
            do {
                _ = try Self.call("GET", base.appendingPathComponent("status"), nil)
                last = nil
                break
            } catch {
                last = error
                usleep(100_000)
            }
        }
        if let last { throw TestFailure("chromedriver did not answer on port \(port): \(last); \(driver.stderr)") }
        let capabilities: [String: Any] = ["capabilities": ["alwaysMatch": [
            "browserName": "chrome",
            "goog:chromeOptions": [
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=\(width),\(height)"],
            ],
        ]]]
        let answer = try Self.call("POST", base.appendingPathComponent("session"), capabilities)
        guard let value = answer as? [String: Any], let id = value["sessionId"] as? String else {
            throw TestFailure("chromedriver gave no session: \(answer)")
        }
        session = id
    }

    public func close() {
        _ = try? Self.call("DELETE", base.appendingPathComponent("session/\(session)"), nil)
        driver.signal(SIGTERM)
        _ = try? driver.wait(timeout: 10)
    }

    @discardableResult
    func command(_ method: String, _ path: String, _ body: [String: Any]? = [:]) throws -> Any {
        try Self.call(method, base.appendingPathComponent("session/\(session)/\(path)"), method == "GET" ? nil : body)
    }

    public func open(_ url: String) throws { try command("POST", "url", ["url": url]) }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    @discardableResult
    public func run(_ script: String, _ args: [Any] = []) throws -> Any {
        try command("POST", "execute/sync", ["script": script, "args": args])
    }

    public func find(_ css: String) throws -> Element {
        let value = try command("POST", "element", ["using": "css selector", "value": css])
        guard let dict = value as? [String: Any], let id = dict[Self.elementKey] as? String else { throw TestFailure("no element \(css)") }
        return Element(id: id)
    }

    public func click(_ element: Element) throws { try command("POST", "element/\(element.id)/click") }

    public func type(_ element: Element, _ text: String) throws {
        try command("POST", "element/\(element.id)/clear")
        try command("POST", "element/\(element.id)/value", ["text": text])
    }

    /// The visible text of the elements matching `css`.
    public func texts(_ css: String) throws -> [String] {
        try run("return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText)", [css]) as? [String] ?? []
    }

    /// Waits until `script` returns true (polling every 100 ms).
    public func waitFor(_ what: String, timeout: Double = 30, _ script: String, _ args: [Any] = []) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try run(script, args)) as? Bool == true { return }
            usleep(100_000)
        }
        throw TestFailure("timed out after \(timeout) s waiting for \(what)")
    }

    /// Saves a PNG of the window.
    public func screenshot(to path: String) throws {
        guard let base64 = try command("GET", "screenshot") as? String, let data = Data(base64Encoded: base64) else {
            throw TestFailure("no screenshot")
        }
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// One WebDriver request; returns the answer's `value`, throws its error. Made with
    /// curl: chromedriver writes headers without a space after the colon, which
    /// swift-corelibs-foundation's URLSession refuses ("Failed writing header").
    static func call(_ method: String, _ url: URL, _ body: [String: Any]?) throws -> Any {
        var arguments = ["-s", "-S", "--max-time", "120", "-X", method, url.absoluteString]
        var bodyFile: String?
        if let body {
            let file = NSTemporaryDirectory() + "webdriver-\(UUID().uuidString).json"
            try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: file))
            bodyFile = file
            arguments += ["-H", "Content-Type: application/json", "--data-binary", "@" + file]
        }
        defer { if let bodyFile { unlink(bodyFile) } }
        let r = try InfraSightTestSupport.run("/usr/bin/curl", arguments)
        guard r.status == 0 else { throw TestFailure("WebDriver \(method) \(url.path): curl: \(r.stderr)") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw TestFailure("WebDriver \(method) \(url.path): not JSON: \(r.stdout.prefix(200))")
        }
        let value = object["value"] ?? NSNull()
        if let dict = value as? [String: Any], let error = dict["error"] as? String {
            throw TestFailure("WebDriver \(method) \(url.path): \(error): \(dict["message"] ?? "")")
        }
        return value
    }
}
