/// Splits ClickHouse SQL into tokens with the same boundaries as ClickHouse's own lexer
/// (src/Parsers/Lexer.cpp), so a check made on these tokens sees what the server will
/// parse: a `;`, `INTO OUTFILE` or `file(` inside a string, a quoted identifier, a heredoc
/// or a comment is not code, and everything outside them is.
///
/// Agreeing on where strings and comments end is the whole point: where two lexers
/// disagree, text one of them takes for a string is code for the other, and a check can
/// be walked around. Hence the details that look pedantic: `''` and backslash escapes
/// inside quotes, `--`, `//`, `# ` and `#!` line comments, nested `/* */` comments,
/// `$tag$...$tag$` heredocs, `$` inside bare words, numbers whose exponent takes a sign
/// (`1e-5`) and the Unicode spaces ClickHouse skips between tokens.
public struct SQLLexer {
    public enum Kind: Equatable, Sendable {
        /// An unquoted word: keyword, identifier or function name.
        case word
        /// A "..." or `...` identifier.
        case quotedIdentifier
        /// A '...' string, x'..'/b'..' literal or $tag$...$tag$ heredoc.
        case string
        case number
        case openParen
        /// `)` or `]`.
        case closeBracket
        case dot
        case semicolon
        /// `\G` (the client's "end of statement, vertical format").
        case verticalDelimiter
        /// Any other operator or punctuation, or a byte ClickHouse refuses.
        case symbol
        case whitespace
        case comment
    }

    public struct Token: Equatable, Sendable {
        public let kind: Kind
        /// Byte offsets into the UTF-8 text.
        public let range: Range<Int>
    }

    /// Why text could not be split (ClickHouse would refuse it too).
    public enum Failure: Error, Equatable, Sendable {
        case unterminatedString
        case unterminatedQuotedIdentifier
        case unterminatedComment
    }

    /// The tokens of `text`, whitespace and comments included, in order.
    public static func tokens(_ text: String) throws(Failure) -> [Token] {
        var lexer = SQLLexer(Array(text.utf8))
        var out: [Token] = []
        while let token = try lexer.next() {
            out.append(token)
            if token.kind != .whitespace && token.kind != .comment { lexer.previousSignificant = token.kind }
        }
        return out
    }

    let bytes: [UInt8]
    var pos = 0
    /// The kind of the last token that was not whitespace or a comment: a `.` after a
    /// word, `)` or number is a dot, not the start of a number (ClickHouse does the same).
    var previousSignificant: Kind?

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func at(_ i: Int) -> UInt8? { i < bytes.count ? bytes[i] : nil }

    static func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
    static func isHex(_ c: UInt8?) -> Bool {
        guard let c else { return false }
        return isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
    }
    static func isWordChar(_ c: UInt8?) -> Bool {
        guard let c else { return false }
        return isDigit(c) || (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F
    }
    static func isSpace(_ c: UInt8?) -> Bool { c.map { [0x20, 0x09, 0x0A, 0x0D, 0x0C, 0x0B].contains($0) } ?? false }

    /// ClickHouse's digit-group separator: `_` between digits (1_000), never first or last.
    func isSeparator(startOfBlock: Bool, hex: Bool, _ i: Int) -> Bool {
        guard at(i) == UInt8(ascii: "_"), !startOfBlock, i + 1 < bytes.count else { return false }
        return hex ? Self.isHex(at(i + 1)) : Self.isDigit(at(i + 1))
    }

    mutating func next() throws(Failure) -> Token? {
        guard pos < bytes.count else { return nil }
        let start = pos
        func token(_ kind: Kind) -> Token { Token(kind: kind, range: start..<pos) }
        let c = bytes[pos]
        switch c {
        case _ where Self.isSpace(c):
            while Self.isSpace(at(pos)) { pos += 1 }
            return token(.whitespace)
        case _ where Self.isDigit(c):
            scanNumber()
            // A number running into word characters is a word (ClickHouse: `1identifier`).
            while Self.isWordChar(at(pos)) { pos += 1 }
            return token(.number)
        case UInt8(ascii: "'"):
            try scanQuoted(c, failure: .unterminatedString)
            return token(.string)
        case UInt8(ascii: "\""), UInt8(ascii: "`"):
            try scanQuoted(c, failure: .unterminatedQuotedIdentifier)
            return token(.quotedIdentifier)
        case UInt8(ascii: "("):
            pos += 1
            return token(.openParen)
        case UInt8(ascii: ")"), UInt8(ascii: "]"):
            pos += 1
            return token(.closeBracket)
        case UInt8(ascii: ";"):
            pos += 1
            return token(.semicolon)
        case UInt8(ascii: "."):
            // A dot unless it starts a number (.5): at the very start, or before a digit
            // when no word, quoted identifier, number or closing bracket precedes it.
            let closesExpression = [.word, .quotedIdentifier, .number, .closeBracket].contains(previousSignificant)
            if start > 0 && (!Self.isDigit(at(pos + 1)) || closesExpression) {
                pos += 1
                return token(.dot)
            }
            pos += 1
            scanDigits(startOfBlock: true, hex: false)
            scanExponent(hex: false)
            return token(.number)
        case UInt8(ascii: "-"):
            pos += 1
            if at(pos) == UInt8(ascii: "-") { return lineComment(from: start) }
            if at(pos) == UInt8(ascii: ">") { pos += 1 }
            return token(.symbol)
        case UInt8(ascii: "/"):
            pos += 1
            if at(pos) == UInt8(ascii: "/") { return lineComment(from: start) }
            if at(pos) == UInt8(ascii: "*") {
                pos += 1
                var depth = 1
                while pos + 2 <= bytes.count {
                    if bytes[pos] == UInt8(ascii: "/") && bytes[pos + 1] == UInt8(ascii: "*") {
                        pos += 2
                        depth += 1
                    } else if bytes[pos] == UInt8(ascii: "*") && bytes[pos + 1] == UInt8(ascii: "/") {
                        pos += 2
                        depth -= 1
                        if depth == 0 { return token(.comment) }
                    } else {
                        pos += 1
                    }
                }
                throw .unterminatedComment
            }
            return token(.symbol)
        case UInt8(ascii: "#"):
            // A comment only when followed by a space or `!` (`#!` shebang), as in ClickHouse.
            if at(pos + 1) == UInt8(ascii: " ") || at(pos + 1) == UInt8(ascii: "!") { return lineComment(from: start) }
            pos += 1
            return token(.symbol)
        case UInt8(ascii: "\\"):
            pos += 1
            if at(pos) == UInt8(ascii: "G") {
                pos += 1
                return token(.verticalDelimiter)
            }
            return token(.symbol)
        default:
            if c == UInt8(ascii: "$") {
                if let end = heredocEnd() {
                    pos = end
                    return token(.string)
                }
                if !Self.isWordChar(at(pos + 1)) {
                    pos += 1
                    return token(.symbol)
                }
            }
            if [UInt8(ascii: "x"), UInt8(ascii: "X"), UInt8(ascii: "b"), UInt8(ascii: "B")].contains(c),
                pos + 2 < bytes.count, bytes[pos + 1] == UInt8(ascii: "'")
            {
                // x'..' / b'..': only hex (binary) digits up to the closing quote.
                let hex = c == UInt8(ascii: "x") || c == UInt8(ascii: "X")
                pos += 2
                while hex ? Self.isHex(at(pos)) : (at(pos) == UInt8(ascii: "0") || at(pos) == UInt8(ascii: "1")) { pos += 1 }
                guard at(pos) == UInt8(ascii: "'") else { throw .unterminatedString }
                pos += 1
                return token(.string)
            }
            if Self.isWordChar(c) || c == UInt8(ascii: "$") {
                while Self.isWordChar(at(pos)) || at(pos) == UInt8(ascii: "$") { pos += 1 }
                return token(.word)
            }
            if let length = unicodeSpaceLength(at: pos) {
                pos += length
                while let more = Self.isSpace(at(pos)) ? 1 : unicodeSpaceLength(at: pos) { pos += more }
                return token(.whitespace)
            }
            // Operators and bytes ClickHouse refuses: one byte each (two-byte operators such
            // as `->` or `!=` need no joining to find where strings and comments are).
            pos += 1
            return token(.symbol)
        }
    }

    mutating func lineComment(from start: Int) -> Token {
        while let b = at(pos), b != 0x0A { pos += 1 }
        return Token(kind: .comment, range: start..<pos)
    }

    /// '...', "..." or `...` with backslash escapes and doubled quotes.
    mutating func scanQuoted(_ quote: UInt8, failure: Failure) throws(Failure) {
        pos += 1
        while true {
            guard let b = at(pos) else { throw failure }
            if b == quote {
                pos += 1
                if at(pos) == quote {
                    pos += 1
                    continue
                }
                return
            }
            if b == UInt8(ascii: "\\") {
                guard pos + 1 < bytes.count else { throw failure }
                pos += 2
                continue
            }
            pos += 1
        }
    }

    /// `$tag$ ... $tag$` (tag: anything up to the next `$`, even empty): the end offset,
    /// or nil when the same tag does not come again (then `$` starts a word or is a symbol).
    func heredocEnd() -> Int? {
        guard let close = bytes[(pos + 1)...].firstIndex(of: UInt8(ascii: "$")) else { return nil }
        let tag = bytes[pos...close]
        var i = close + 1
        while i + tag.count <= bytes.count {
            if bytes[i..<(i + tag.count)].elementsEqual(tag) { return i + tag.count }
            i += 1
        }
        return nil
    }

    mutating func scanDigits(startOfBlock: Bool, hex: Bool) {
        var block = startOfBlock
        while (hex ? Self.isHex(at(pos)) : Self.isDigit(at(pos))) || isSeparator(startOfBlock: block, hex: hex, pos) {
            pos += 1
            block = false
        }
    }

    mutating func scanExponent(hex: Bool) {
        guard pos + 1 < bytes.count else { return }
        let e = bytes[pos]
        guard hex ? (e == UInt8(ascii: "p") || e == UInt8(ascii: "P")) : (e == UInt8(ascii: "e") || e == UInt8(ascii: "E")) else { return }
        pos += 1
        if pos + 1 < bytes.count && (bytes[pos] == UInt8(ascii: "-") || bytes[pos] == UInt8(ascii: "+")) { pos += 1 }
        scanDigits(startOfBlock: true, hex: false)
    }

    /// A number starting at a digit, as ClickHouse skips it (its value is not needed).
    mutating func scanNumber() {
        if previousSignificant == .dot {
            // After a dot only a plain integer (x.1.1 is two tuple accesses).
            pos += 1
            while Self.isDigit(at(pos)) || isSeparator(startOfBlock: false, hex: false, pos) { pos += 1 }
            return
        }
        var hex = false
        var startOfBlock = false
        if pos + 2 < bytes.count && bytes[pos] == UInt8(ascii: "0"),
            let kind = at(pos + 1), [UInt8(ascii: "x"), UInt8(ascii: "X"), UInt8(ascii: "b"), UInt8(ascii: "B")].contains(kind)
        {
            let isHexPrefix = kind == UInt8(ascii: "x") || kind == UInt8(ascii: "X")
            let valid = isHexPrefix ? Self.isHex(at(pos + 2)) : (at(pos + 2) == UInt8(ascii: "0") || at(pos + 2) == UInt8(ascii: "1"))
            if valid {
                hex = isHexPrefix
                pos += 2
                startOfBlock = true
            } else {
                pos += 1
            }
        } else {
            pos += 1
        }
        scanDigits(startOfBlock: startOfBlock, hex: hex)
        if at(pos) == UInt8(ascii: ".") {
            pos += 1
            scanDigits(startOfBlock: true, hex: hex)
        }
        scanExponent(hex: hex)
    }

    /// The Unicode spaces ClickHouse skips between tokens (queries pasted from word
    /// processors): U+0085, U+00A0, U+180E, U+2000-U+200D, U+2028, U+2029, U+202F, U+205F,
    /// U+2060, U+3000, U+FEFF. Their UTF-8 length at `i`, or nil.
    func unicodeSpaceLength(at i: Int) -> Int? {
        guard let b0 = at(i), b0 >= 0xC2 else { return nil }
        if b0 == 0xC2, let b1 = at(i + 1), b1 == 0x85 || b1 == 0xA0 { return 2 }
        guard let b1 = at(i + 1), let b2 = at(i + 2) else { return nil }
        let scalar = (UInt32(b0 & 0x0F) << 12) | (UInt32(b1 & 0x3F) << 6) | UInt32(b2 & 0x3F)
        guard b0 & 0xF0 == 0xE0, b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80 else { return nil }
        switch scalar {
        case 0x180E, 0x2000...0x200D, 0x2028, 0x2029, 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF: return 3
        default: return nil
        }
    }
}

/// One statement as tokens: its first keyword and a trailing `FORMAT name` split off.
struct SQLStatement {
    let bytes: [UInt8]
    /// The tokens that are not whitespace or comments.
    let significant: [SQLLexer.Token]
    /// Significant tokens before trailing `;`s and a trailing `FORMAT name`.
    let body: ArraySlice<SQLLexer.Token>
    /// The name of a trailing `FORMAT name` clause, unquoted.
    let format: String?

    init(_ text: String) throws(SQLLexer.Failure) {
        bytes = Array(text.utf8)
        significant = try SQLLexer.tokens(text).filter { $0.kind != .whitespace && $0.kind != .comment }
        var body = significant[...]
        while body.last?.kind == .semicolon { body.removeLast() }
        var format: String?
        if body.count >= 3, let last = body.last, [.word, .quotedIdentifier].contains(last.kind),
            body[body.endIndex - 2].kind == .word
        {
            let formatWord = body[body.endIndex - 2]
            if Self.text(bytes, formatWord).uppercased() == "FORMAT" {
                format = Self.name(bytes, last)
                body.removeLast(2)
            }
        }
        self.body = body
        self.format = format
    }

    /// The statement's text without the trailing `FORMAT name` and `;` (comments inside
    /// are kept; one that ran to the end of the text is cut with the rest).
    var sql: String {
        guard let first = body.first, let last = body.last else { return "" }
        return String(decoding: bytes[first.range.lowerBound..<last.range.upperBound], as: UTF8.self)
    }

    /// The first keyword, upper-cased; a statement opening with `(` is a SELECT.
    var keyword: String {
        guard let first = body.first else { return "" }
        if first.kind == .openParen { return "SELECT" }
        return first.kind == .word ? Self.text(bytes, first).uppercased() : ""
    }

    static func text(_ bytes: [UInt8], _ token: SQLLexer.Token) -> String {
        String(decoding: bytes[token.range], as: UTF8.self)
    }

    /// A word as written, or a quoted identifier without its quotes and escapes: the name
    /// ClickHouse resolves (`file`, "file" and `file` in backquotes are one function).
    static func name(_ bytes: [UInt8], _ token: SQLLexer.Token) -> String {
        guard token.kind == .quotedIdentifier else { return text(bytes, token) }
        let inner = bytes[(token.range.lowerBound + 1)..<(token.range.upperBound - 1)]
        let quote = bytes[token.range.lowerBound]
        var out: [UInt8] = []
        var i = inner.startIndex
        while i < inner.endIndex {
            let b = inner[i]
            if b == UInt8(ascii: "\\"), i + 3 < inner.endIndex, inner[i + 1] == UInt8(ascii: "x") || inner[i + 1] == UInt8(ascii: "X"),
                let byte = UInt8(String(decoding: inner[(i + 2)...(i + 3)], as: UTF8.self), radix: 16)
            {
                out.append(byte) // \xHH, as in `\x66ile`
                i += 4
            } else if b == UInt8(ascii: "\\"), i + 1 < inner.endIndex {
                out.append(Self.unescaped(inner[i + 1]))
                i += 2
            } else if b == quote, i + 1 < inner.endIndex, inner[i + 1] == quote {
                out.append(quote)
                i += 2
            } else {
                out.append(b)
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// ClickHouse's escapes inside quotes (\n, \t, ...); any other escaped byte is itself.
    static func unescaped(_ b: UInt8) -> UInt8 {
        switch b {
        case UInt8(ascii: "n"): return 0x0A
        case UInt8(ascii: "t"): return 0x09
        case UInt8(ascii: "r"): return 0x0D
        case UInt8(ascii: "0"): return 0x00
        case UInt8(ascii: "b"): return 0x08
        case UInt8(ascii: "f"): return 0x0C
        case UInt8(ascii: "a"): return 0x07
        case UInt8(ascii: "v"): return 0x0B
        case UInt8(ascii: "e"): return 0x1B
        default: return b
        }
    }
}

/// `text` as a ClickHouse string literal, quotes included: backslash and quote escaped, so
/// the literal holds exactly `text` (for the program's own SQL: file names, batch ids,
/// rule names; values from outside go as query parameters or data files instead).
public func sqlStringLiteral(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
}
