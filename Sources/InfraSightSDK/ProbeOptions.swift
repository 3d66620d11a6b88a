import Foundation

/// What the host gives a plugin at creation: its options, as given under
/// `plugins.options.<name>` in the config file (the host has already checked every key
/// and value type against the plugin's declared ``ProbeOption``s), and its log.
public struct ProbeOptions: Sendable {
    /// An option's value as JSON has it.
    public enum Value: Sendable, Equatable, Decodable {
        case bool(Bool)
        /// A whole number that fits an Int, kept exact.
        case integer(Int)
        case number(Double)
        case string(String)
        case list([Value])
        /// null, or an object: no option kind takes one.
        case other

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            // JSON's true is not a number and 1 is not a boolean: each is tried strictly.
            if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let i = try? c.decode(Int.self) { self = .integer(i) }
            else if let n = try? c.decode(Double.self) { self = .number(n) }
            else if let s = try? c.decode(String.self) { self = .string(s) }
            else if let l = try? c.decode([Value].self) { self = .list(l) }
            else { self = .other }
        }

        /// A value made in Swift (tests): Bool, integers, Double, String and arrays of them.
        init(any: Any) {
            switch any {
            case let b as Bool: self = .bool(b)
            case let n as any BinaryInteger: self = Int(exactly: n).map(Value.integer) ?? .number(Double(n))
            case let n as any BinaryFloatingPoint: self = .number(Double(n))
            case let s as String: self = .string(s)
            case let l as [Any]: self = .list(l.map(Value.init(any:)))
            default: self = .other
            }
        }

        var integer: Int? {
            switch self {
            case .integer(let i): i
            case .number(let n): Int(exactly: n)
            default: nil
            }
        }
    }

    let values: [String: Value]
    /// The host's log for this plugin (``ProbeLog/none`` outside a host).
    public let log: ProbeLog

    /// Parses the JSON object the host passes to init.
    public init(json: String, log: ProbeLog = .none) throws {
        guard let values = try? JSONDecoder().decode([String: Value].self, from: Data(json.utf8)) else {
            throw ProbeError("options are not a JSON object")
        }
        self.values = values
        self.log = log
    }

    public init(_ values: [String: Any] = [:], log: ProbeLog = .none) {
        self.values = values.mapValues(Value.init(any:))
        self.log = log
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = values[key] else { return nil }
        guard let n = v.integer else { throw ProbeError("option \(key) must be an integer") }
        return n
    }

    public func string(_ key: String) throws -> String? {
        guard let v = values[key] else { return nil }
        guard case .string(let s) = v else { throw ProbeError("option \(key) must be a string") }
        return s
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = values[key] else { return nil }
        guard case .bool(let b) = v else { throw ProbeError("option \(key) must be true or false") }
        return b
    }

    public func intList(_ key: String) throws -> [Int]? {
        guard let v = values[key] else { return nil }
        guard case .list(let list) = v else { throw ProbeError("option \(key) must be a list of integers") }
        return try list.map {
            guard let n = $0.integer else { throw ProbeError("option \(key) must be a list of integers") }
            return n
        }
    }

    public func stringList(_ key: String) throws -> [String]? {
        guard let v = values[key] else { return nil }
        guard case .list(let list) = v else { throw ProbeError("option \(key) must be a list of strings") }
        return try list.map {
            guard case .string(let s) = $0 else { throw ProbeError("option \(key) must be a list of strings") }
            return s
        }
    }
}
