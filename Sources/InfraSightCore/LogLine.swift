/// Text from outside the process (a plugin's log message, an agent's names and the
/// refusals that quote them) made safe for one log line: control characters and line or
/// paragraph separators become spaces, so nobody can start a forged line of their own;
/// at most `limit` characters.
public func oneLogLine<S: StringProtocol>(_ text: S, limit: Int = .max) -> String {
    var line = String.UnicodeScalarView()
    for scalar in text.unicodeScalars.prefix(limit) {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: line.append(" ")
        default: line.append(scalar)
        }
    }
    return String(line)
}
