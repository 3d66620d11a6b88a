import Foundation
import InfraSightStorage
import InfraSightSchema

/// An alert's text: `%column` stands for the row's value of that column (`%%` is a `%`).
/// Compiled into a ClickHouse `concat(...)` so the evaluator renders it with the row.
enum OutputTemplate {
    enum Piece: Equatable {
        case text(String)
        case column(String)
    }

    static func pieces(_ template: String) -> [Piece] {
        var out: [Piece] = []
        var text = ""
        var chars = Array(template)[...]
        while let c = chars.first {
            chars = chars.dropFirst()
            guard c == "%" else {
                text.append(c)
                continue
            }
            if chars.first == "%" {
                text.append("%")
                chars = chars.dropFirst()
                continue
            }
            let name = chars.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            guard !name.isEmpty else {
                text.append("%")
                continue
            }
            chars = chars.dropFirst(name.count)
            if !text.isEmpty { out.append(.text(text)) }
            text = ""
            out.append(.column(String(name)))
        }
        if !text.isEmpty { out.append(.text(text)) }
        return out
    }

    static func columns(_ template: String) -> [String] {
        pieces(template).compactMap { if case .column(let name) = $0 { name } else { nil } }
    }

    /// `concat('shell ', toString(`comm`), ...)`; the columns were checked against the table.
    static func sql(_ template: String) -> String {
        let parts = pieces(template).map { piece -> String in
            switch piece {
            case .text(let t): sqlStringLiteral(t)
            case .column(let name): "ifNull(toString(`\(name)`), '')"
            }
        }
        if parts.isEmpty { return "''" }
        return parts.count == 1 ? parts[0] : "concat(" + parts.joined(separator: ", ") + ")"
    }
}
