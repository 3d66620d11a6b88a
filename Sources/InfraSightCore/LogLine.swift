/// Text from outside the process (a plugin's log message, an agent's names and the
/// refusals that quote them) made safe for one log line: control characters, line or
/// paragraph separators and the bidirectional overrides and isolates (U+202A-E,
/// U+2066-9, which make text read in another order than it is) become spaces, so nobody
/// can start a forged line of their own or disguise one; at most `limit` characters.
public func oneLogLine<S: StringProtocol>(_ text: S, limit: Int = .max) -> String {
    var line = String.UnicodeScalarView()
    for scalar in text.unicodeScalars.prefix(limit) {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: line.append(" ")
        default: line.append((0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value) ? " " : scalar)
        }
    }
    return String(line)
}
