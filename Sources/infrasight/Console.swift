import ArgumentParser
import Foundation
import Logging

/// Prints one line to stderr, prefixed with the program name.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("infrasight: \(message)\n".utf8))
}

/// Prints one error line and returns the exit code to throw: every user-caused failure
/// ends this way, never with a stack trace.
func failure(_ message: String, code: Int32 = 1) -> ExitCode {
    printError(message)
    return ExitCode(code)
}

/// swift-log backend: one line per message on stderr, "infrasight: level: message".
struct StderrLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level == .notice ? "note" : "\(event.level)"
        FileHandle.standardError.write(Data("infrasight: \(level): \(event.message)\n".utf8))
    }
}

/// Writes a JSON value with keys in the order given (for `--json` output).
indirect enum JSON {
    case string(String)
    case number(Int)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    func render(into out: inout String, indent: Int = 0, pretty: Bool = true) {
        let pad = pretty ? String(repeating: "  ", count: indent + 1) : ""
        let end = pretty ? String(repeating: "  ", count: indent) : ""
        let nl = pretty ? "\n" : ""
        switch self {
        case .string(let s): out += JSON.quote(s)
        case .number(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[" + nl
            for (i, item) in items.enumerated() {
                out += pad
                item.render(into: &out, indent: indent + 1, pretty: pretty)
                out += (i + 1 < items.count ? "," : "") + nl
            }
            out += end + "]"
        case .object(let pairs):
            if pairs.isEmpty { out += "{}"; return }
            out += "{" + nl
            for (i, (k, v)) in pairs.enumerated() {
                out += pad + JSON.quote(k) + (pretty ? ": " : ":")
                v.render(into: &out, indent: indent + 1, pretty: pretty)
                out += (i + 1 < pairs.count ? "," : "") + nl
            }
            out += end + "}"
        }
    }

    var text: String {
        var s = ""
        render(into: &s)
        return s
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

extension Optional where Wrapped == String {
    var json: JSON { map(JSON.string) ?? .null }
}
