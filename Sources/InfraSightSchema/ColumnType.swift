import Foundation

/// The ClickHouse column types InfraSight writes. Anything else is `.other` and can only be
/// written as NULL/default by the host, which the loader reports as a bad DDL.
public indirect enum ColumnType: Equatable, Sendable, CustomStringConvertible {
    case uint8, uint16, uint32, uint64
    case int8, int16, int32, int64
    case float32, float64
    case string
    case dateTime
    case dateTime64(precision: Int)
    case json
    case nullable(ColumnType)
    case other(String)

    /// Parses a ClickHouse type as written in DDL (`UInt32`, `DateTime64(3)`, `Nullable(String)`).
    public init(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch t {
        case "UInt8": self = .uint8
        case "UInt16": self = .uint16
        case "UInt32": self = .uint32
        case "UInt64": self = .uint64
        case "Int8": self = .int8
        case "Int16": self = .int16
        case "Int32": self = .int32
        case "Int64": self = .int64
        case "Float32": self = .float32
        case "Float64": self = .float64
        case "String": self = .string
        case "DateTime": self = .dateTime
        case "JSON", "Object('json')": self = .json
        default:
            if let inner = t.unwrap(prefix: "Nullable(") {
                self = .nullable(ColumnType(parsing: inner))
            } else if let inner = t.unwrap(prefix: "DateTime64("), let p = Int(inner.split(separator: ",")[0].trimmingCharacters(in: .whitespaces)) {
                self = .dateTime64(precision: p)
            } else {
                self = .other(t)
            }
        }
    }

    public var description: String {
        switch self {
        case .uint8: "UInt8"
        case .uint16: "UInt16"
        case .uint32: "UInt32"
        case .uint64: "UInt64"
        case .int8: "Int8"
        case .int16: "Int16"
        case .int32: "Int32"
        case .int64: "Int64"
        case .float32: "Float32"
        case .float64: "Float64"
        case .string: "String"
        case .dateTime: "DateTime"
        case .dateTime64(let p): "DateTime64(\(p))"
        case .json: "JSON"
        case .nullable(let inner): "Nullable(\(inner))"
        case .other(let text): text
        }
    }

    /// The type without Nullable.
    public var base: ColumnType {
        if case .nullable(let inner) = self { return inner }
        return self
    }

    public var isNullable: Bool {
        if case .nullable = self { return true }
        return false
    }

    public var isSupported: Bool {
        switch self {
        case .other: false
        case .dateTime64(let p): (0...9).contains(p)
        case .nullable(let inner): !inner.isNullable && inner.isSupported
        default: true
        }
    }
}

extension String {
    fileprivate func unwrap(prefix: String) -> String? {
        guard hasPrefix(prefix), hasSuffix(")") else { return nil }
        return String(dropFirst(prefix.count).dropLast())
    }

}
