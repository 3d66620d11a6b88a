import Foundation

/// What the host gives a plugin at creation: its options, as given under
/// `plugins.options.<name>` in the config file (the host has already checked every key
/// and value type against the plugin's declared ``ProbeOption``s), and its log.
public struct ProbeOptions: @unchecked Sendable {
    let values: [String: Any]
    /// The host's log for this plugin (``ProbeLog/none`` outside a host).
    public let log: ProbeLog

    /// Parses the JSON object the host passes to init.
    public init(json: String, log: ProbeLog = .none) throws {
        guard let data = json.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data),
            let values = object as? [String: Any]
        else { throw ProbeError("options are not a JSON object") }
        self.values = values
        self.log = log
    }

    public init(_ values: [String: Any] = [:], log: ProbeLog = .none) {
        self.values = values
        self.log = log
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = values[key] else { return nil }
        if let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded() { return n.intValue }
        throw ProbeError("option \(key) must be an integer")
    }

    public func string(_ key: String) throws -> String? {
        guard let v = values[key] else { return nil }
        guard let s = v as? String else { throw ProbeError("option \(key) must be a string") }
        return s
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = values[key] else { return nil }
        guard let b = v as? Bool else { throw ProbeError("option \(key) must be true or false") }
        return b
    }

    public func intList(_ key: String) throws -> [Int]? {
        guard let v = values[key] else { return nil }
        guard let list = v as? [Any] else { throw ProbeError("option \(key) must be a list of integers") }
        return try list.map {
            guard let n = $0 as? NSNumber else {
                throw ProbeError("option \(key) must be a list of integers")
            }
            return n.intValue
        }
    }

    public func stringList(_ key: String) throws -> [String]? {
        guard let v = values[key] else { return nil }
        guard let list = v as? [String] else { throw ProbeError("option \(key) must be a list of strings") }
        return list
    }
}
